"""``python -m phantom``: write a synthetic spine CT (DICOM) and its ground truth (NIfTI, JSON)."""

from __future__ import annotations

import argparse
import json
import time
from datetime import datetime, timedelta
from pathlib import Path

from phantom.followup import follow_up
from phantom.generator import generate
from phantom.options import LESION_KINDS, FollowUpOptions, PhantomOptions
from phantom.writers import write_dicom_series, write_nifti


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m phantom", description=__doc__)
    p.add_argument("--seed", type=int, required=True)
    p.add_argument("--out", type=Path, required=True,
                   help="output folder: DIR/dicom/*.dcm, DIR/truth/*.nii.gz, truth.json")
    p.add_argument("--full-spine", action="store_true", help="T1 to sacrum in view")
    p.add_argument("--levels", nargs=2, metavar=("FIRST", "LAST"),
                   help="cover these units, e.g. T10 L3 (sacrum allowed)")
    p.add_argument("--lesions", type=int, default=0, help="number of lesions (one per level)")
    p.add_argument("--lesion-kinds", nargs="+", choices=LESION_KINDS, default=list(LESION_KINDS))
    p.add_argument("--posterior-lesions", action="store_true",
                   help="allow lesions in the pedicles")
    p.add_argument("--compression", metavar="LEVEL|random",
                   help="compression fracture at a level (T1..L5) or a random one in view")
    p.add_argument("--compression-fraction", type=float, help="height loss, e.g. 0.3")
    p.add_argument("--compression-kind", choices=("wedge", "crush"),
                   help="anterior (wedge) or uniform (crush) height loss; default random")
    p.add_argument("--spacing", type=float, nargs=3, metavar=("X", "Y", "Z"),
                   help="column, row and slice spacing in mm")
    p.add_argument("--matrix", type=int, help="in-plane matrix (columns = rows)")
    p.add_argument("--no-pose", action="store_true", help="no random rotation or translation")
    p.add_argument("--noise", type=float, help="noise standard deviation in HU")
    p.add_argument("--patient-id", default=None, help="default: PHANTOM-<seed>")
    p.add_argument("--patient-name", default=None, help="default: Phantom^<seed>")
    p.add_argument("--study-date", default="20240101")
    p.add_argument("--no-nifti", action="store_true", help="skip the NIfTI truth files")
    follow = p.add_argument_group(
        "follow-up", "write a later study of the phantom the options above describe, with "
        "DIR/truth/follow_up.json: per-level transforms from the baseline, lesion changes")
    follow.add_argument("--follow-up", type=int, metavar="SEED",
                        help="seed of the follow-up's pose, curvature and lesion changes")
    follow.add_argument("--interval-days", type=int, default=182,
                        help="days from the baseline's study date")
    follow.add_argument("--new-lesions", type=int, default=1)
    follow.add_argument("--resolved-lesions", type=int, default=1,
                        help="baseline lesions that resolve; the others grow or shrink")
    follow.add_argument("--new-compression", metavar="LEVEL|random",
                        help="a new compression fracture")
    return p


def _later(study_date: str, days: int) -> str:
    return (datetime.strptime(study_date, "%Y%m%d") + timedelta(days=days)).strftime("%Y%m%d")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        options = PhantomOptions(
            seed=args.seed, full_spine=args.full_spine,
            levels=tuple(args.levels) if args.levels else None,
            spacing=tuple(args.spacing) if args.spacing else None,
            matrix=args.matrix, lesions=args.lesions, lesion_kinds=tuple(args.lesion_kinds),
            posterior_lesions=args.posterior_lesions, compression=args.compression,
            compression_fraction=args.compression_fraction,
            compression_wedge=None if args.compression_kind is None
            else args.compression_kind == "wedge",
            max_rotation_deg=0.0 if args.no_pose else 8.0,
            max_translation_mm=0.0 if args.no_pose else 20.0, noise_sigma=args.noise)
        later = None if args.follow_up is None else FollowUpOptions(
            seed=args.follow_up, new_lesions=args.new_lesions, resolved=args.resolved_lesions,
            compression=args.new_compression)
        study_date = args.study_date if later is None else _later(args.study_date,
                                                                  args.interval_days)
    except ValueError as exc:
        _parser().error(str(exc))
    started = time.monotonic()
    phantom = generate(options)
    if later is not None:
        try:
            changes = follow_up(phantom, later)
        except ValueError as exc:
            _parser().error(str(exc))
        phantom = changes.phantom
        (args.out / "truth").mkdir(parents=True, exist_ok=True)
        (args.out / "truth" / "follow_up.json").write_text(json.dumps(
            {"study_dates": [args.study_date, study_date], **changes.truth}, indent=2) + "\n")
    files = write_dicom_series(phantom, args.out / "dicom",
                               patient_id=args.patient_id or f"PHANTOM-{args.seed}",
                               patient_name=args.patient_name or f"Phantom^{args.seed}",
                               study_date=study_date, series_description=None
                               if later is None else f"Synthetic spine phantom, seed "
                               f"{args.seed}, follow-up {later.seed}")
    if not args.no_nifti:
        write_nifti(phantom, args.out / "truth")
    truth = phantom.truth
    full = truth["levels_in_view"]
    columns, rows, slices = truth["grid"]["size"]
    spacing = "x".join(f"{v:g}" for v in truth["grid"]["spacing_mm"])
    compression = truth["compression"]
    follow = "" if later is None else f" follow-up {later.seed} on {study_date}"
    print(f"phantom seed={args.seed}{follow}: {len(files)} slices {columns}x{rows}x{slices} "
          f"@ {spacing} mm, levels {full[0] + '-' + full[-1] if full else 'none'} in view, "
          f"{len(truth['lesions'])} lesion(s), compression "
          f"{compression['level'] if compression else 'none'}, "
          f"{time.monotonic() - started:.1f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
