"""Per-vertebra registration and lesion change on phantom follow-ups: accuracy and time.

For each seed (4_300_000.. by default, used by no test) and slice thickness: a baseline of five
consecutive levels at a random place of the spine (pixels 0.8 mm, 3 lesions), its follow-up
(pose change 5-10 degrees and 10-20 mm, curvature change, lesions growing, shrinking, one
resolving, two new, and a new compression fracture every other seed), compared by the
registrar (:func:`registrar.longitudinal.compare`). Per vertebra in view in both studies:
target registration error at the 8 corners of the vertebral body and residual rotation
against the exact truth transform, Dice and HD95 of the warped masks, wall and CPU time. Per
lesion: the error of the measured volume change, new and resolved lesions found. Writes
``bench/results/registration.json``.

    .venv/bin/python bench/registration.py --seeds 4 --slices 1.0 1.5 2.0 3.0
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk  # noqa: N813 - the conventional alias

from phantom import PhantomOptions, generate
from phantom.followup import FollowUp, follow_up
from phantom.options import FollowUpOptions
from registrar import rigid
from registrar.longitudinal import Comparison, Scan, compare
from registrar.settings import ChangeSettings, RegistrationSettings
from spinemets import labels

REPO = Path(__file__).resolve().parents[1]
PIXEL_MM = 0.8
FOV_MM = 190.0


def case(seed: int, slice_mm: float) -> FollowUp:
    rng = np.random.default_rng(seed)
    first = int(rng.integers(0, len(labels.LEVELS) - 4))
    baseline = generate(PhantomOptions(
        seed=seed, levels=(labels.LEVELS[first], labels.LEVELS[first + 4]),
        spacing=(PIXEL_MM, PIXEL_MM, slice_mm), matrix=round(FOV_MM / PIXEL_MM), lesions=3))
    return follow_up(baseline, FollowUpOptions(seed=seed, new_lesions=2, resolved=1,
                                               compression="random" if seed % 2 else None))


def vertebra_rows(truth: FollowUp, comparison: Comparison, cpu_s: float) -> list[dict[str, Any]]:
    registered = comparison.registration.vertebrae
    fractured = (truth.truth["compression"]["new"] or {}).get("level")
    rows = []
    for found in registered:
        level = truth.truth["levels"][found.level]
        exact = np.asarray(level["baseline_to_follow_up"])
        corners = np.asarray(level["body_corners_lps"])
        tre = np.linalg.norm(rigid.apply(found.prior_to_current, corners)
                             - rigid.apply(exact, corners), axis=1).max()
        rows.append({"level": found.level, "new_fracture": found.level == fractured,
                     "tre_mm": round(float(tre), 3),
                     "rotation_error_deg": round(rigid.rotation_deg(
                         found.prior_to_current @ rigid.inverse(exact)), 3),
                     "dice": round(found.dice, 3), "hd95_mm": round(found.hd95_mm, 2),
                     "failed": found.failed, "refined": found.refined,
                     "seconds": round(found.seconds, 3),
                     "cpu_seconds": round(cpu_s / len(registered), 3)})
    return rows


def lesion_rows(truth: FollowUp, comparison: Comparison) -> list[dict[str, Any]]:
    """Each truth lesion of a registered vertebra with the measured group whose lesion is
    nearest to it (within 5 mm) in its study."""
    rows = []
    for entry in truth.truth["lesions"]:
        vertebra = next((c for c in comparison.changes if c.level == entry["level"]), None)
        if vertebra is None:
            continue
        study, side = ("follow_up", "current") if entry["follow_up"] else ("baseline", "prior")
        centre = np.asarray(entry[study]["centre_lps"])
        near = [(float(np.linalg.norm(np.asarray(lesion.centroid_lps) - centre)), g)
                for g in vertebra.lesions for lesion in getattr(g, side)]
        distance, group = min(near, key=lambda item: item[0]) if near else (np.inf, None)
        group = group if distance < 5.0 else None
        expected = entry["volume_change_ml"]
        rows.append({"change": entry["change"], "expected_ml": expected,
                     "status": None if group is None else group.status,
                     "measured_ml": None if group is None else round(group.change_ml, 5),
                     "relative_error": None if group is None or not expected
                     else round(abs(group.change_ml - expected) / abs(expected), 5)})
    return rows


def summary(vertebrae: list[dict[str, Any]], lesions: list[dict[str, Any]]) -> dict[str, Any]:
    intact = [v for v in vertebrae if not v["new_fracture"]]
    tre = [v["tre_mm"] for v in vertebrae]
    rotation = [v["rotation_error_deg"] for v in vertebrae]
    errors = [row["relative_error"] for row in lesions if row["relative_error"] is not None]

    def found(change: str, status: str) -> str:
        rows = [row for row in lesions if row["change"] == change]
        return f"{sum(row['status'] == status for row in rows)}/{len(rows)}"

    return {
        "vertebrae": len(vertebrae), "new_fractures": len(vertebrae) - len(intact),
        "tre_mm": {"median": round(statistics.median(tre), 3),
                   "p95": round(float(np.percentile(tre, 95)), 3), "max": max(tre)},
        "rotation_error_deg": {"median": round(statistics.median(rotation), 3),
                               "p95": round(float(np.percentile(rotation, 95)), 3),
                               "max": max(rotation)},
        "within_1mm_1deg": f"{sum(t <= 1 and r <= 1 for t, r in zip(tre, rotation, strict=True))}"
                           f"/{len(tre)}",
        "flagged_intact": sum(v["failed"] for v in intact),
        "flagged_new_fractures": sum(v["failed"] for v in vertebrae if v["new_fracture"]),
        "seconds_per_vertebra": {"median": round(statistics.median(
            v["seconds"] for v in vertebrae), 3), "max": max(v["seconds"] for v in vertebrae)},
        "cpu_seconds_per_vertebra": round(statistics.mean(v["cpu_seconds"]
                                                          for v in vertebrae), 3),
        "lesion_change_relative_error_max": max(errors) if errors else None,
        "new_lesions_found": found("new", "new"),
        "resolved_lesions_found": found("resolved", "resolved"),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--first-seed", type=int, default=4_300_000)
    parser.add_argument("--slices", type=float, nargs="+", default=[1.0, 1.5, 2.0, 3.0],
                        help="slice thicknesses (mm)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="registration settings to override, e.g. metric=mean-squares")
    parser.add_argument("--out", type=Path, default=REPO / "bench/results/registration.json")
    args = parser.parse_args()
    settings = RegistrationSettings.model_validate(
        dict(item.split("=", 1) for item in args.set))
    results: dict[str, Any] = {}
    for slice_mm in args.slices:
        vertebrae: list[dict[str, Any]] = []
        lesions: list[dict[str, Any]] = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            truth = case(seed, slice_mm)
            cpu, wall = time.process_time(), time.monotonic()
            comparison = compare(Scan(truth.baseline.ct, truth.baseline.vertebrae,
                                      truth.baseline.lesions),
                                 Scan(truth.phantom.ct, truth.phantom.vertebrae,
                                      truth.phantom.lesions), settings, ChangeSettings())
            assert comparison is not None
            vertebrae += vertebra_rows(truth, comparison, time.process_time() - cpu)
            lesions += lesion_rows(truth, comparison)
            print(f"slices {slice_mm} mm, seed {seed}: "
                  f"{len(comparison.registration.vertebrae)} vertebrae in "
                  f"{time.monotonic() - wall:.1f} s", flush=True)
        results[f"{slice_mm:g}mm"] = {"summary": summary(vertebrae, lesions),
                                      "vertebrae": vertebrae, "lesions": lesions}
    report = {
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "itk_threads": sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()},
        "pixel_mm": PIXEL_MM, "seeds": [args.first_seed, args.first_seed + args.seeds - 1],
        "settings": settings.model_dump(), "by_slice_thickness": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v["summary"] for k, v in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
