"""``python -m listener`` as a real process: config, dcmtk peers, logs without PHI, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml
from listener_testkit import SENDER, Downstream, ct_series, wait_for, write_files

from spinemets import grpcutil
from spinemets.ports import free_port

pytestmark = pytest.mark.integration

PATIENT_NAME, PATIENT_ID = "Doe^Jane", "PID-4711-SECRET"


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def run_listener(config: dict[str, object], tmp_path: Path) -> subprocess.Popen[str]:
    path = tmp_path / "spinemets.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPINEMETS")}
    env["SPINEMETS_CONFIG"] = str(path)
    return subprocess.Popen([sys.executable, "-m", "listener"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_refuses_to_start_on_a_bad_setting(tmp_path: Path) -> None:
    process = run_listener({"common": {"data_dir": str(tmp_path)},
                            "listener": {"port": 70000, "allowed_callers": [{"ae_title": "A"}]}},
                           tmp_path)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "listener.port" in stderr


def test_process_stores_processes_drains_and_logs_no_phi(tmp_path: Path,
                                                         downstream: Downstream) -> None:
    dicom_port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    config = {
        "common": {"log_level": "DEBUG", "pseudonym_key": "process-test-key",
                   "data_dir": str(tmp_path / "data")},
        "listener": {
            "host": "127.0.0.1", "port": dicom_port, "grpc_host": "127.0.0.1",
            "grpc_port": grpc_port, "metrics_port": metrics_port,
            "allowed_callers": [{"ae_title": SENDER}],
            "completion_idle_s": 0.3, "poll_interval_s": 0.05,
            "rules": [{"name": "ct-spine", "min_slices": 5}],
            "segmenter": downstream.address, "registrar": downstream.address,
            "risk": downstream.address,
        },
    }
    process = run_listener(config, tmp_path)
    try:
        assert grpcutil.wait_healthy(f"127.0.0.1:{grpc_port}", timeout=30), "not SERVING"
        echo = subprocess.run(["echoscu", "-aet", SENDER, "127.0.0.1", str(dicom_port)],
                              capture_output=True, text=True, timeout=30)
        assert echo.returncode == 0, echo.stderr
        series = ct_series(slices=6, patient_name=PATIENT_NAME, patient_id=PATIENT_ID)
        bad = ct_series(slices=6, patient_name=PATIENT_NAME, patient_id=PATIENT_ID)
        del bad[2]
        files = write_files(series + bad, tmp_path / "out")
        store = subprocess.run(["storescu", "-aet", SENDER, "127.0.0.1", str(dicom_port),
                                *map(str, files)], capture_output=True, text=True, timeout=60,
                               env={**os.environ, "TCP_NODELAY": "1"})
        assert store.returncode == 0, store.stderr
        wait_for(lambda: downstream.risk.delivered, timeout=30, what="delivery")
        quarantined = (tmp_path / "data" / "listener" / "quarantine" / bad[0].SeriesInstanceUID
                       / "reason.json")
        wait_for(quarantined.exists, timeout=30, what="quarantine")
        url = f"http://127.0.0.1:{metrics_port}/metrics"
        wait_for(lambda: 'stage_seconds_count{stage="delivery"} 1.0' in scrape(url),
                 timeout=30, what="delivery timed")
        metrics = scrape(url)
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=30)
    assert process.returncode == 0
    records = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    messages = [r["message"] for r in records]
    assert "listener serving" in messages and messages[-1] == "listener stopped"
    assert any(m.startswith("series quarantined: uneven-spacing") for m in messages)
    for secret in (PATIENT_ID, "Doe", "Jane"):
        assert secret not in stderr
    assert "spinemets_listener_associations_accepted_total 2.0" in metrics  # echo and store
    assert 'spinemets_listener_instances_received_total{outcome="stored"} 11.0' in metrics
    assert 'spinemets_listener_series{state="quarantined"} 1.0' in metrics
    assert 'spinemets_listener_jobs{state="delivered"} 1.0' in metrics
    for secret in (PATIENT_ID, "Doe", "Jane"):
        assert secret not in metrics
