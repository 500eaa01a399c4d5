"""Settings of the listener (section ``listener`` of config/spinemets.yaml), validated at start."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, IPvAnyNetwork, model_validator
from pydicom.uid import RE_VALID_UID

from spinemets.config import Section

_AE_TITLE = re.compile(r"^[\x20-\x5b\x5d-\x7e]{1,16}$")  # PS3.5 AE VR: no backslash or controls
_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$")


def _ae_title(value: str) -> str:
    if not _AE_TITLE.match(value) or not value.strip():
        raise ValueError("an AE title has 1-16 printable characters, no backslash, not all spaces")
    return value.strip()


def _address(value: str) -> str:
    match = _ADDRESS.match(value)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise ValueError("expected host:port with a port in 1-65535")
    return value


def _regex(value: str | None) -> str | None:
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
    return value


def _uid(value: str) -> str:
    if len(value) > 64 or not RE_VALID_UID.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid UID")
    return value


AETitle = Annotated[str, AfterValidator(_ae_title)]
Address = Annotated[str, AfterValidator(_address)]
Port = Annotated[int, Field(ge=0, le=65535)]  # 0: any free port (tests)


class Caller(Section):
    """A sender allowed to associate: its calling AE title and, optionally, its addresses."""

    ae_title: AETitle
    #: Addresses or networks (CIDR) the caller may connect from; ``None``: any address.
    hosts: tuple[IPvAnyNetwork, ...] | None = None


class Rule(Section):
    """A routing rule: which series get which pipeline."""

    name: str = Field(min_length=1, max_length=64)
    modality: str = "CT"
    #: Regular expression searched (case-insensitive) in the Series Description; ``None``: any.
    series_description: Annotated[str | None, AfterValidator(_regex)] = None
    min_slices: int = Field(default=1, ge=1)
    #: Model roles the segmenter runs for this series.
    roles: tuple[str, ...] = ("vertebrae",)


class RetryPolicy(Section):
    """Retries of a failed step: delay = min(max_delay_s, base_delay_s * factor**n), jittered."""

    max_attempts: int = Field(default=6, ge=1)
    base_delay_s: float = Field(default=2.0, gt=0)
    max_delay_s: float = Field(default=300.0, gt=0)
    factor: float = Field(default=2.0, ge=1)


class Timeouts(Section):
    """Deadline of each downstream call, seconds."""

    segment_s: float = Field(default=1800.0, gt=0)
    #: Pair includes the registrar's per-vertebra registration of a follow-up with its prior
    #: (docs/configuration.md: why it is far above the time that takes).
    pair_s: float = Field(default=600.0, gt=0)
    assess_s: float = Field(default=600.0, gt=0)
    deliver_s: float = Field(default=600.0, gt=0)


class Pacs(Section):
    """A Query/Retrieve SCP (Study Root) searched for priors."""

    ae_title: AETitle
    host: str = Field(min_length=1)
    port: int = Field(gt=0, le=65535)


class PriorSettings(Section):
    """Finding a prior study in a PACS when the registrar's history has none (``priors``); the
    baseline among the patient's earlier studies follows ``common.baseline``."""

    #: The PACS queried (C-FIND) and retrieved from; ``None``: the registrar's history only.
    pacs: Pacs | None = None
    #: ``move``: C-MOVE to ``move_destination`` (the PACS must know that AE title and send
    #: from an allowed caller); ``get``: C-GET on the query association.
    retrieve: Literal["move", "get"] = "move"
    #: AE title the PACS sends a C-MOVE's instances to; ``None``: the listener's own.
    move_destination: AETitle | None = None
    #: Only studies at most this many days older than the current one; 0: any age.
    max_age_days: int = Field(default=0, ge=0)
    #: Association, network and C-FIND response timeout, seconds.
    timeout_s: float = Field(default=30.0, gt=0)
    #: Longest wait for each C-MOVE / C-GET response while the PACS sends, seconds.
    retrieve_timeout_s: float = Field(default=600.0, gt=0)
    #: How long a follow-up waits for its retrieved prior to be segmented and recorded,
    #: seconds; after that it is processed as a baseline.
    wait_s: float = Field(default=3600.0, gt=0)


class Settings(Section):
    """The listener's settings; see config/spinemets.yaml for documented defaults."""

    ae_title: AETitle = "SPINEMETS"
    host: str = "0.0.0.0"
    port: Port = 11112
    allowed_callers: tuple[Caller, ...] = ()
    #: Accept associations from any calling AE title and address (demo only).
    allow_any_caller: bool = False
    #: Further storage SOP classes accepted (C-STORE success) and discarded, e.g. scout images.
    ignored_sop_classes: tuple[Annotated[str, AfterValidator(_uid)], ...] = ()
    #: Spool, quarantine, job files and job database; default ``<common.data_dir>/listener``.
    state_dir: Path | None = None
    #: A series without new instances for this long is complete.
    completion_idle_s: float = Field(default=10.0, gt=0)
    rules: tuple[Rule, ...] = (Rule(name="ct-spine", min_slices=20),)
    grpc_host: str = "0.0.0.0"
    grpc_port: Port = 50051
    #: Address other services use to reach the data service; default 127.0.0.1:<grpc_port>.
    advertise_address: Address | None = None
    #: Port of the Prometheus endpoint (``GET /metrics`` on ``grpc_host``); 0 disables it.
    metrics_port: Port = 9101
    segmenter: Address = "127.0.0.1:50052"
    registrar: Address = "127.0.0.1:50053"
    risk: Address = "127.0.0.1:50054"
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    runner_workers: int = Field(default=1, ge=1, le=16)
    #: How often the completion timer and the job runner look for work, seconds.
    poll_interval_s: float = Field(default=0.5, gt=0, le=60)
    #: On SIGTERM, how long running associations and gRPC calls may take to finish, seconds.
    drain_s: float = Field(default=30.0, ge=0)
    priors: PriorSettings = Field(default_factory=PriorSettings)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if not self.allow_any_caller and not self.allowed_callers:
            raise ValueError("allowed_callers is empty and allow_any_caller is false: "
                             "every association would be rejected")
        names = [rule.name for rule in self.rules]
        if len(set(names)) != len(names):
            raise ValueError(f"routing rule names must be unique: {names}")
        pacs = self.priors.pacs
        if (pacs is not None and self.priors.retrieve == "move" and not self.allow_any_caller
                and pacs.ae_title not in {c.ae_title for c in self.allowed_callers}):
            raise ValueError(f"priors.pacs.ae_title {pacs.ae_title!r} is not in allowed_callers: "
                             "the instances of a C-MOVE it sends would be rejected")
        return self

    @property
    def move_destination(self) -> str:
        """The AE title a C-MOVE of a prior is sent to."""
        return self.priors.move_destination or self.ae_title

    def state_path(self, data_dir: Path) -> Path:
        return self.state_dir if self.state_dir is not None else data_dir / "listener"

    def data_service_address(self, bound_port: int) -> str:
        return self.advertise_address or f"127.0.0.1:{bound_port}"
