"""Settings of the registrar (section ``registrar`` of config/spinemets.yaml)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from spinemets.config import Port, Section


class Settings(Section):
    """The registrar's settings; see config/spinemets.yaml for documented defaults."""

    grpc_host: str = "0.0.0.0"
    grpc_port: Port = 50053
    #: Port of the Prometheus endpoint (``GET /metrics`` on ``grpc_host``); 0 disables it.
    metrics_port: Port = 9103
    #: SQLite database of processed studies; default ``<common.data_dir>/registrar/history.db``.
    database: Path | None = None
    #: On SIGTERM, how long running calls may take to finish, seconds.
    drain_s: float = Field(default=30.0, ge=0)

    def database_path(self, data_dir: Path) -> Path:
        return self.database if self.database is not None else (
            data_dir / "registrar" / "history.db")
