"""``python -m nnunet_tools import|export-dataset``: nnU-Net v2 models in, phantom datasets out.

``import-nnunet`` and ``export-nnunet-dataset`` are the same commands as console scripts.
See docs/models.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from nnunet_tools import dataset, source
from nnunet_tools.importer import ImportOptions, import_model
from nnunet_tools.label_mapping import LabelMapping
from spinemets.errors import SpineMetsError


def _import_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path,
                        help="trained model folder (<trainer>__<plans>__<configuration>, with "
                             "plans.json), or the dataset folder above it with --configuration")
    parser.add_argument("--out", type=Path, required=True,
                        help="Triton model directory, e.g. triton-models/vertebrae (its name is "
                             "the model's name and role)")
    parser.add_argument("--configuration", help="e.g. 3d_fullres (default: the folder's)")
    parser.add_argument("--folds", nargs="+",
                        help="folds to average, e.g. 0 1 2 3 4 or all (default: every fold_<n>)")
    parser.add_argument("--checkpoint", default=source.CHECKPOINT)
    parser.add_argument("--label-map", default="catalogue",
                        help="label mapping: a built-in name (totalsegmentator, "
                             "spine-mets-ct-seg) or a JSON file; default: catalogue names only")
    parser.add_argument("--unmapped", choices=("error", "background"),
                        help="labels that match no catalogue name (default: the mapping's)")
    parser.add_argument("--orientation", choices=("LPS", "RAS"),
                        help="array orientation the model was trained in (default: the "
                             "mapping's, else LPS)")
    parser.add_argument("--no-mirroring", action="store_true",
                        help="never mirror this model at test time")
    parser.add_argument("--tensorrt", choices=("FP32", "FP16"),
                        help="add the TensorRT accelerator to the production config.pbtxt")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--title", help="shown with every result (default: from the plans)")
    parser.add_argument("--demo", action="store_true",
                        help="mark the model as a demo (trained on phantoms, not for clinical use)")
    parser.add_argument("--version", default="1", help="Triton version folder")


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="nnUNet_raw folder")
    parser.add_argument("--dataset-id", type=int, required=True, help="1..999")
    parser.add_argument("--name", default="SpineMetsPhantom")
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--maps", nargs="+", choices=sorted(dataset.MAPS), default=["vertebrae"],
                        help="truth maps merged into the labels (later ones win)")
    parser.add_argument("--orientation", choices=("LPS", "RAS"), default="LPS")
    parser.add_argument("--levels", nargs=2, metavar=("FIRST", "LAST"),
                        help="units in view, e.g. T10 L3 (default: random per phantom)")
    parser.add_argument("--spacing", type=float, nargs=3, metavar=("X", "Y", "Z"))
    parser.add_argument("--matrix", type=int, help="in-plane matrix (columns = rows)")
    parser.add_argument("--lesions", type=int, default=0, help="lesions per phantom")
    parser.add_argument("--noise", type=float, help="noise standard deviation in HU")
    parser.add_argument("--no-pose", action="store_true", help="no random rotation or shift")


def run_import(args: argparse.Namespace) -> None:
    folds = None if not args.folds or args.folds == ["all"] else args.folds
    model = source.load(args.model, args.configuration, folds, args.checkpoint)
    mapping = (LabelMapping(description="catalogue names") if args.label_map == "catalogue"
               else LabelMapping.load(args.label_map))
    import_model(model, args.out, ImportOptions(
        mapping=mapping, unmapped=args.unmapped, orientation=args.orientation,
        mirroring=not args.no_mirroring, title=args.title, demo=args.demo,
        version=args.version, max_batch_size=args.max_batch_size, tensorrt=args.tensorrt))


def run_export(args: argparse.Namespace) -> None:
    options: dict[str, Any] = {"lesions": args.lesions}
    if args.levels:
        options["levels"] = tuple(args.levels)
    if args.spacing:
        options["spacing"] = tuple(args.spacing)
    if args.matrix:
        options["matrix"] = args.matrix
    if args.noise is not None:
        options["noise_sigma"] = args.noise
    if args.no_pose:
        options.update(max_rotation_deg=0.0, max_translation_mm=0.0)
    seeds = range(args.first_seed, args.first_seed + args.cases)
    folder = dataset.export(args.out, args.dataset_id, args.name, list(seeds), options,
                            args.maps, args.orientation)
    print(folder)


def _main(command: str, argv: list[str] | None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(prog=command, description=__doc__)
    if command == "import-nnunet":
        _import_arguments(parser)
        runner = run_import
    else:
        _export_arguments(parser)
        runner = run_export
    args = parser.parse_args(argv)
    try:
        runner(args)
    except (SpineMetsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def import_main(argv: list[str] | None = None) -> int:
    """``import-nnunet``: a trained nnU-Net v2 model folder -> a Triton model directory."""
    return _main("import-nnunet", argv)


def export_main(argv: list[str] | None = None) -> int:
    """``export-nnunet-dataset``: phantoms -> an nnU-Net v2 raw dataset."""
    return _main("export-nnunet-dataset", argv)


def main(argv: list[str] | None = None) -> int:
    """``python -m nnunet_tools import ...`` or ``export-dataset ...``."""
    arguments = sys.argv[1:] if argv is None else argv
    commands = {"import": import_main, "export-dataset": export_main}
    if not arguments or arguments[0] not in commands:
        print("usage: python -m nnunet_tools {import,export-dataset} ... (-h for help)",
              file=sys.stderr)
        return 2
    return commands[arguments[0]](arguments[1:])


if __name__ == "__main__":
    sys.exit(main())
