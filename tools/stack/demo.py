"""The demo: a phantom CT travels from a DICOM sender through the whole stack to a mock PACS.

Steps: start the stack (embedded Triton, listener, segmenter, registrar, risk, mock PACS);
generate a phantom; push it with ``storescu``; wait for the SEG and the SR at the PACS; print a
per-vertebra table read back from the SR (and the Dice against the phantom's truth, read back
from the SEG); stop the stack.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pydicom

from phantom import PhantomOptions, generate, write_dicom_series
from spinemets import labels
from spinemets.errors import SpineMetsError
from spinemets.geometry import Volume, assemble_ct
from stack.mock_pacs import MockPacs
from stack.readback import dice, read_measurement_groups, seg_masks_on_volume
from stack.scrape import stage_table, wait_for_stages
from stack.sender import push
from stack.stack import PIPELINE, StackConfig, stack_running

log = logging.getLogger(__name__)

DISCLAIMER = "Segmentation by a phantom-trained demo model, not for clinical use."


def wait_for_results(pacs: MockPacs, study_uid: str, timeout: float) -> tuple[Path, Path]:
    """Block until one SEG and one SR of ``study_uid`` are at the PACS; return their paths."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found: dict[str, Path] = {}
        for path in list(pacs.received):
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            if ds.StudyInstanceUID == study_uid:
                found[str(ds.Modality)] = path
        if "SEG" in found and "SR" in found:
            return found["SEG"], found["SR"]
        time.sleep(0.5)
    raise SpineMetsError(f"no SEG and SR at the PACS after {timeout:.0f} s; see the logs")


def print_table(sr_path: Path, seg_path: Path, volume: Volume,
                truth: dict[str, np.ndarray]) -> None:
    """Per-vertebra table from the SR, with Dice of the SEG against the phantom truth."""
    masks = seg_masks_on_volume(seg_path, volume)
    print(f"\n{'level':<6} {'volume (mL)':>12} {'mean HU':>9} {'Dice vs truth':>14}")
    for group in read_measurement_groups(sr_path):
        level = group.tracking_identifier.split()[0]
        volume_ml = group.values.get("Volume", (float("nan"), ""))[0]
        mean_hu = next((v for k, (v, unit) in group.values.items() if unit == "[hnsf'U]"),
                       float("nan"))
        segment = masks.get(f"{level} vertebra")
        score = (f"{dice(segment, truth[level]):.3f}"
                 if segment is not None and level in truth else "-")
        print(f"{level:<6} {volume_ml:>12.1f} {mean_hu:>9.1f} {score:>14}")
    print(f"\n{DISCLAIMER}")


def print_stages(config: StackConfig) -> None:
    """The per-stage latency histograms, scraped from each service's metrics endpoint."""
    urls = {name: url for name in PIPELINE if (url := config.metrics_url(name)) is not None}
    if not urls:
        return
    try:
        scrapes = wait_for_stages(urls, timeout=30.0)
    except OSError as exc:
        log.warning("cannot scrape the metrics endpoints: %s", exc)
        return
    print(f"stage latencies scraped from the metrics endpoints:\n{stage_table(scrapes)}")


def run_demo(config: StackConfig) -> int:
    """Run the demo end to end; 0 on success."""
    root = config.stack.root
    for stale in ("work", "pacs", "phantom", "logs"):
        shutil.rmtree(root / stale, ignore_errors=True)
    options = PhantomOptions(seed=config.stack.phantom_seed, full_spine=True,
                             spacing=config.stack.phantom_spacing,
                             matrix=config.stack.phantom_matrix)
    phantom = generate(options)
    files = write_dicom_series(phantom, root / "phantom" / "dicom", patient_id="DEMO-0001",
                               patient_name="Demo^Phantom")
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    truth_map = phantom.vertebrae
    truth = {label.name.split("_", 1)[1]: truth_map.mask(label.name)
             for label in labels.in_group(labels.Group.VERTEBRA)}
    volume = assemble_ct([pydicom.dcmread(f) for f in files])
    print(f"phantom: {len(files)} slices written to {files[0].parent}")
    with stack_running(config, with_pacs=True) as running:
        pacs = running.pacs
        assert pacs is not None
        print(f"metrics endpoints (Prometheus, while the stack runs):\n"
              f"{config.metrics_summary()}")
        started = time.monotonic()
        sender = push(files[0].parent, "127.0.0.1", config.listener.port,
                      config.listener.ae_title, config.stack.sender_ae_title)
        print(f"pushed with {sender} to {config.listener.ae_title}@127.0.0.1:"
              f"{config.listener.port}")
        seg_path, sr_path = wait_for_results(pacs, study_uid, config.stack.result_timeout_s)
        print(f"results at the PACS after {time.monotonic() - started:.1f} s")
        print_stages(config)
    print_table(sr_path, seg_path, volume, truth)
    print(f"\nSEG: {seg_path}\nSR:  {sr_path}\nlogs: {root / 'logs'}")
    return 0
