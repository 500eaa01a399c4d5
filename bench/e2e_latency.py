"""End-to-end latency of the demo series: last instance received -> SR at the PACS, by stage.

Starts the local stack (embedded Triton, the four services, the mock PACS) with the project's
configuration, pushes the demo phantom with ``storescu``, and reads the stage times from the
listener's JSON log (``<step> done`` records carry their duration) and from the files' arrival
at the mock PACS. Writes ``bench/results/e2e_latency.json``.

    .venv/bin/python bench/e2e_latency.py
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pydicom

from phantom import PhantomOptions, generate, write_dicom_series
from spinemets import logs
from stack.demo import wait_for_results
from stack.sender import push
from stack.stack import StackConfig, stack_running

REPO = Path(__file__).resolve().parents[1]


def log_records(path: Path) -> list[dict[str, Any]]:
    records = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            records.append(json.loads(line))
    return records


def timestamp(record: dict[str, Any]) -> float:
    return datetime.strptime(record["time"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/e2e_latency.json")
    args = parser.parse_args()
    logs.configure("bench", "WARNING")
    config = StackConfig.load()
    root = config.stack.root
    for stale in ("work", "pacs", "phantom", "logs"):
        shutil.rmtree(root / stale, ignore_errors=True)
    phantom = generate(PhantomOptions(seed=config.stack.phantom_seed, full_spine=True,
                                      spacing=config.stack.phantom_spacing,
                                      matrix=config.stack.phantom_matrix))
    files = write_dicom_series(phantom, root / "phantom" / "dicom", patient_id="BENCH-1",
                               patient_name="Bench^Latency")
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    with stack_running(config, with_pacs=True) as running:
        assert running.pacs is not None
        push_started = time.time()
        push(files[0].parent, "127.0.0.1", config.listener.port, config.listener.ae_title,
             config.stack.sender_ae_title)
        push_s = time.time() - push_started
        sr_path = wait_for_results(running.pacs, study_uid,
                                   config.stack.result_timeout_s)["SR"]
        sr_arrived = sr_path.stat().st_mtime
    database = config.listener.state_path(root / "work") / "listener.sqlite"
    with sqlite3.connect(database) as conn:
        (last_received,) = conn.execute("SELECT MAX(last_received) FROM series").fetchone()
    records = log_records(root / "logs" / "listener.log")
    stages: dict[str, float] = {}
    for record in records:
        message = str(record.get("message", ""))
        if message.endswith(" done") and "ms" in record:
            stages[message.removesuffix(" done")] = round(float(record["ms"]) / 1000.0, 2)
        elif message.startswith("series routed"):
            stages["wait for completion"] = round(timestamp(record) - last_received, 2)
    result = {
        "series": {"instances": len(files), "size": list(phantom.ct.geometry.size),
                   "spacing_mm": list(phantom.ct.geometry.spacing)},
        "push_s": round(push_s, 2),
        "last_instance_to_sr_at_pacs_s": round(sr_arrived - last_received, 2),
        "stages_s": stages,
        "completion_idle_s": config.listener.completion_idle_s,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
