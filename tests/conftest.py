"""Fixtures of the end-to-end tests: Orthanc as the PACS and the whole stack on free ports."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e import LESION_SERIES, SENDER_AE
from peers import Orthanc, free_port
from spinemets.config import read_raw
from stack.stack import RunningStack, StackConfig, stack_running

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    if shutil.which("Orthanc") is None:
        pytest.skip("Orthanc is not installed (make apt)")
    server = Orthanc(tmp_path_factory.mktemp("orthanc"))
    server.start()
    yield server
    server.stop()


def stack_config(root: Path, orthanc: Orthanc) -> dict[str, Any]:
    """The project's configuration with every port free, delivery to Orthanc, and Orthanc
    searched for priors (it C-MOVEs them to the listener)."""
    raw: dict[str, Any] = yaml.safe_load((REPO / "config/spinemets.yaml").read_text())
    ports = {name: free_port() for name in (
        "dicom", "listener", "segmenter", "registrar", "risk", "http", "grpc", "metrics", "pacs",
        "listener_metrics", "segmenter_metrics", "registrar_metrics", "risk_metrics")}
    raw["common"]["data_dir"] = str(root / "work")
    raw["listener"] = {
        **(raw.get("listener") or {}),
        "port": ports["dicom"], "grpc_port": ports["listener"],
        "metrics_port": ports["listener_metrics"],
        "allowed_callers": [{"ae_title": SENDER_AE, "hosts": ["127.0.0.1/32"]},
                            {"ae_title": orthanc.aet, "hosts": ["127.0.0.1/32"]}],
        "allow_any_caller": False,
        "completion_idle_s": 2.0,
        "segmenter": f"127.0.0.1:{ports['segmenter']}",
        "registrar": f"127.0.0.1:{ports['registrar']}",
        "risk": f"127.0.0.1:{ports['risk']}",
        "retry": {"max_attempts": 20, "base_delay_s": 0.5, "max_delay_s": 5.0, "factor": 2.0},
        "priors": {"pacs": {"ae_title": orthanc.aet, "host": "127.0.0.1",
                            "port": orthanc.dicom_port}},
        # Series described as such also get the lesion model (tests/test_prior_retrieval.py:
        # the lesion change of a follow-up); all others the vertebra model only.
        "rules": [{"name": "ct-spine-lesions", "modality": "CT",
                   "series_description": LESION_SERIES, "min_slices": 20,
                   "roles": ["vertebrae", "lesions"]},
                  *raw["listener"]["rules"]],
    }
    raw["segmenter"] = {**(raw.get("segmenter") or {}), "grpc_port": ports["segmenter"],
                        "metrics_port": ports["segmenter_metrics"],
                        "triton_url": f"127.0.0.1:{ports['grpc']}"}
    raw["registrar"] = {**(raw.get("registrar") or {}), "grpc_port": ports["registrar"],
                        "metrics_port": ports["registrar_metrics"]}
    raw["risk"] = {**(raw.get("risk") or {}), "grpc_port": ports["risk"],
                   "metrics_port": ports["risk_metrics"],
                   "destinations": [{"ae_title": orthanc.aet, "host": "127.0.0.1",
                                     "port": orthanc.dicom_port}]}
    raw["triton"] = {**(raw.get("triton") or {}), "http_port": ports["http"],
                     "grpc_port": ports["grpc"], "metrics_port": ports["metrics"]}
    raw["stack"] = {**(raw.get("stack") or {}), "root": str(root), "pacs_port": ports["pacs"]}
    return raw


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory,
          orthanc: Orthanc) -> Iterator[tuple[StackConfig, RunningStack]]:
    """Triton and the four services, delivering to Orthanc; the config file is in the env."""
    root = tmp_path_factory.mktemp("stack")
    raw = stack_config(root, orthanc)
    path = root / "spinemets.yaml"
    path.write_text(yaml.safe_dump(raw))
    previous = os.environ.get("SPINEMETS_CONFIG")
    os.environ["SPINEMETS_CONFIG"] = str(path)
    try:
        config = StackConfig.load(read_raw(path))
        orthanc.add_modality("spinemets", config.listener.ae_title, config.listener.port)
        with stack_running(config, with_pacs=False) as running:
            yield config, running
    finally:
        if previous is None:
            os.environ.pop("SPINEMETS_CONFIG", None)
        else:
            os.environ["SPINEMETS_CONFIG"] = previous
