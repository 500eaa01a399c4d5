"""Ingest throughput: the listener against dcmtk ``storescp``, same series, same ``storescu``.

The receivers run on loopback in this one script, one after the other, each receiving the
same 300-slice 512x512 CT series from dcmtk ``storescu`` ``--repeat`` times. ``storescp`` runs
with ``TCP_NODELAY=1`` (else it waits ~40 ms per instance) and writes its files plainly; the
listener writes, fsyncs and records each instance before answering. A third run, pynetdicom's
own ``storescp`` application with ``--ignore`` (receives, stores nothing), separates what the
DICOM library costs from what durability costs. Writes ``bench/results/ingest.json``.

    .venv/bin/python bench/ingest.py [--slices 300] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from phantom import PhantomOptions, generate, write_dicom_series
from spinemets.grpcutil import wait_healthy
from spinemets.ports import free_port

REPO = Path(__file__).resolve().parents[1]


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listens on port {port}")


def send(files_dir: Path, port: int, called: str) -> float:
    """Seconds for one storescu run of the whole folder."""
    started = time.perf_counter()
    subprocess.run(["storescu", "-aet", "STORESCU", "-aec", called, "+sd", "127.0.0.1",
                    str(port), str(files_dir)], check=True, capture_output=True)
    return time.perf_counter() - started


def bench_storescp(files_dir: Path, work: Path, repeat: int) -> list[float]:
    port = free_port()
    out = work / "storescp"
    out.mkdir()
    server = subprocess.Popen(["storescp", "-aet", "STORESCP", "-od", str(out), str(port)],
                              env={**os.environ, "TCP_NODELAY": "1"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        return [send(files_dir, port, "STORESCP") for _ in range(repeat)]
    finally:
        server.terminate()
        server.wait()


def bench_pynetdicom(files_dir: Path, repeat: int) -> list[float]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "pynetdicom", "storescp", str(port),
                               "-aet", "PYNETDICOM", "--ignore"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port)
        return [send(files_dir, port, "PYNETDICOM") for _ in range(repeat)]
    finally:
        server.terminate()
        server.wait()


def bench_listener(files_dir: Path, work: Path, repeat: int) -> list[float]:
    raw = yaml.safe_load((REPO / "config/spinemets.yaml").read_text())
    port, grpc_port = free_port(), free_port()
    raw["common"]["data_dir"] = str(work / "listener")
    raw["listener"].update({"port": port, "grpc_port": grpc_port, "metrics_port": 0,
                            "allowed_callers": [{"ae_title": "STORESCU"}],
                            "completion_idle_s": 3600.0})
    config = work / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    log = open(work / "listener.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen([sys.executable, "-m", "listener"], stdout=log,
                              stderr=subprocess.STDOUT,
                              env={**os.environ, "SPINEMETS_CONFIG": str(config)})
    try:
        if not wait_healthy(f"127.0.0.1:{grpc_port}", timeout=60):
            raise RuntimeError(f"listener did not start; see {work / 'listener.log'}")
        return [send(files_dir, port, "SPINEMETS") for _ in range(repeat)]
    finally:
        server.terminate()
        server.wait()
        log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/ingest.json")
    args = parser.parse_args()
    if shutil.which("storescu") is None or shutil.which("storescp") is None:
        print("dcmtk is not installed (make apt)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        phantom = generate(PhantomOptions(seed=1, spacing=(0.8, 0.8, 1.0),
                                          size=(512, 512, args.slices)))
        files = write_dicom_series(phantom, work / "series", patient_id="BENCH",
                                   patient_name="Bench^Series")
        megabytes = sum(f.stat().st_size for f in files) / 1e6
        reference = bench_storescp(files[0].parent, work, args.repeat)
        library = bench_pynetdicom(files[0].parent, args.repeat)
        listener = bench_listener(files[0].parent, work, args.repeat)
    ref, lib, ours = (statistics.median(t) for t in (reference, library, listener))
    result = {
        "series": {"instances": len(files), "megabytes": round(megabytes, 1)},
        "storescp_s": reference, "pynetdicom_ignore_s": library, "listener_s": listener,
        "storescp_instances_per_s": round(len(files) / ref, 1),
        "pynetdicom_ignore_instances_per_s": round(len(files) / lib, 1),
        "listener_instances_per_s": round(len(files) / ours, 1),
        "listener_time_over_storescp": round(ours / ref, 3),
        "pynetdicom_ignore_time_over_storescp": round(lib / ref, 3),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
