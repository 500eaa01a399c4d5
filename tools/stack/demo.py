"""The demo: a phantom CT travels from a DICOM sender through the whole stack to a mock PACS.

Steps: start the stack (embedded Triton, listener, segmenter, registrar, risk, mock PACS);
generate a phantom (full spine, with lesions); push it with ``storescu``; wait for the SEG, the
SR and the visual report at the PACS; print the per-vertebra table read back from the SR
(volume, mean HU, lesion type) and the muscle and lesion segments, with the Dice of vertebrae
and muscles against the phantom's truth read back from the SEG; extract the report's PDF; stop
the stack.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pydicom

from phantom import Phantom, PhantomOptions, generate, write_dicom_series
from spinemets import codes, labels
from spinemets.errors import SpineMetsError
from spinemets.geometry import Volume, assemble_ct
from stack.mock_pacs import MockPacs
from stack.readback import dice, read_measurement_groups, seg_masks_on_volume
from stack.scrape import stage_table, wait_for_stages
from stack.sender import push
from stack.stack import PIPELINE, StackConfig, stack_running

log = logging.getLogger(__name__)

DISCLAIMER = "Segmentation by phantom-trained demo models, not for clinical use."
#: Concept of the SR's per-vertebra lesion type (risk.sr_writer).
LESION_TYPE = codes.PRIVATE_SCHEME["lesion_type"].meaning
#: Concepts of the SR's trabecular vBMD and factor of risk (risk.sr_vertebra).
VBMD = codes.PRIVATE_SCHEME["vbmd"].meaning
FACTOR_OF_RISK = codes.PRIVATE_SCHEME["factor_of_risk"].meaning


RESULTS = ("SEG", "SR", "DOC")


def wait_for_results(pacs: MockPacs, study_uid: str, timeout: float) -> dict[str, Path]:
    """Block until the SEG, the SR and the report PDF of ``study_uid`` are at the PACS; return
    one path per modality received (the report's secondary capture pages too, as OT)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found: dict[str, Path] = {}
        for path in list(pacs.received):
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            if ds.StudyInstanceUID == study_uid:
                found[str(ds.Modality)] = path
        if all(m in found for m in RESULTS):
            return found
        time.sleep(0.5)
    raise SpineMetsError(f"no {', '.join(RESULTS)} at the PACS after {timeout:.0f} s; "
                         "see the logs")


def extract_pdf(doc_path: Path, out: Path) -> Path:
    """Write the PDF encapsulated in the DICOM object at ``doc_path`` to ``out``."""
    document = bytes(pydicom.dcmread(doc_path).EncapsulatedDocument)
    out.write_bytes(document[:int(document.rfind(b"%%EOF")) + 5])
    return out


def print_table(sr_path: Path, seg_path: Path, volume: Volume,
                truth: dict[str, np.ndarray]) -> None:
    """Tables from the SR (vertebrae with their lesion type, muscles, lesion segments), with
    Dice of the SEG's segments against the phantom truth where it has the structure."""
    masks = seg_masks_on_volume(seg_path, volume)
    groups = read_measurement_groups(sr_path)
    print(f"\n{'vertebra':<9} {'volume (mL)':>12} {'mean HU':>9} {'vBMD (mg/cm3)':>14} "
          f"{'max factor of risk':>19} {'lesion type':>24} {'Dice vs truth':>14}")
    for group in groups:
        if not group.tracking_identifier.endswith(" vertebra"):
            continue
        level = group.tracking_identifier.split()[0]
        volume_ml = group.values.get("Volume", (float("nan"), ""))[0]
        mean_hu = next((v for k, (v, unit) in group.values.items() if unit == "[hnsf'U]"),
                       float("nan"))
        vbmd = group.values.get(VBMD, (float("nan"), ""))[0]
        phi = max(group.series.get(FACTOR_OF_RISK, []), default=float("nan"))
        kind = group.codes.get(LESION_TYPE, "-")
        print(f"{level:<9} {volume_ml:>12.1f} {mean_hu:>9.1f} {vbmd:>14.0f} {phi:>19.2f} "
              f"{kind:>24} {_score(masks, group.tracking_identifier, truth):>14}")
    print("(max factor of risk: the highest of the activities in the SR; nan where it is "
          "missing, the SR and the report give the reason)")
    others = [g for g in groups
              if not g.tracking_identifier.endswith(" vertebra") and "Volume" in g.values]
    if others:
        print(f"\n{'segment':<30} {'volume (mL)':>12} {'Dice vs truth':>14}")
    for group in others:
        volume_ml = group.values.get("Volume", (float("nan"), ""))[0]
        print(f"{group.tracking_identifier:<30} {volume_ml:>12.3f} "
              f"{_score(masks, group.tracking_identifier, truth):>14}")
    print(f"\n{DISCLAIMER}")


def _score(masks: dict[str, np.ndarray], name: str, truth: dict[str, np.ndarray]) -> str:
    segment = masks.get(name)
    return f"{dice(segment, truth[name]):.3f}" if segment is not None and name in truth else "-"


def phantom_truth(phantom: Phantom) -> dict[str, np.ndarray]:
    """Truth masks by segment label: vertebrae and muscles (lesions are typed per vertebra in
    the SEG, so they are compared in the evaluation, not here)."""
    truth = {label.display: phantom.vertebrae.mask(label.name)
             for label in labels.in_group(labels.Group.VERTEBRA)}
    truth.update({label.display: phantom.muscles.mask(label.name)
                  for label in labels.in_group(labels.Group.MUSCLE)})
    return truth


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
                             matrix=config.stack.phantom_matrix,
                             lesions=config.stack.phantom_lesions)
    phantom = generate(options)
    files = write_dicom_series(phantom, root / "phantom" / "dicom", patient_id="DEMO-0001",
                               patient_name="Demo^Phantom")
    study_uid = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    truth = phantom_truth(phantom)
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
        results = wait_for_results(pacs, study_uid, config.stack.result_timeout_s)
        print(f"results at the PACS after {time.monotonic() - started:.1f} s")
        print_stages(config)
    print_table(results["SR"], results["SEG"], volume, truth)
    report = extract_pdf(results["DOC"], root / "report.pdf")
    print(f"\nSEG: {results['SEG']}\nSR:  {results['SR']}\nreport (encapsulated PDF): "
          f"{results['DOC']}, extracted to {report}"
          + (f"\nreport page as secondary capture: {results['OT']}" if "OT" in results else "")
          + f"\nlogs: {root / 'logs'}")
    return 0
