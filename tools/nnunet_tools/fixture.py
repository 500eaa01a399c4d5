"""The trained nnU-Net fixture of the equivalence test: a tiny model trained by nnU-Net itself.

:func:`ensure` returns the trained model folder (``plans.json``, ``dataset.json``,
``fold_<f>/checkpoint_final.pth``), building it once if needed:

1. phantoms exported as a raw dataset (:mod:`nnunet_tools.dataset`);
2. ``nnUNetv2_plan_and_preprocess --no_pp`` (fingerprint, default plans);
3. the default 3d_fullres plans shrunk, as nnU-Net users do, under their own plans identifier:
   a coarser target spacing, a small patch, three stages of few features;
4. ``nnUNetv2_preprocess`` with those plans and a split of two folds (``splits_final.json``);
5. each fold trained on the CPU by :class:`~nnunet_tools.trainers.tiny.nnUNetTrainerSpineMetsTiny`.

The result is cached in ``.cache/nnunet/fixture-<key>/`` where the key hashes :data:`FIXTURE`,
the source of this module, the trainer and the dataset export, and the nnunetv2 and torch
versions; only the trained
folder is kept. Every nnU-Net step runs as a subprocess with the nnU-Net paths in its own
environment. About two CPU-minutes (seven minutes of wall time on a busy two-core machine).
``python -m nnunet_tools.fixture`` builds it and prints the folder.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from nnunet_tools import dataset
from nnunet_tools.trainers import tiny

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
CACHE = REPO_ROOT / ".cache" / "nnunet"
CONFIGURATION = "3d_fullres"
PLANS = "nnUNetPlansSpineMetsTiny"

#: Everything the fixture is made from (part of the cache key).
FIXTURE: dict[str, Any] = {
    "dataset_id": 990,
    "name": "SpineMetsTinyFixture",
    "seeds": [9901, 9902, 9903, 9904, 9905, 9906],
    "phantom": {"levels": ["L1", "L3"], "spacing": [2.0, 2.0, 3.0], "matrix": 72},
    "maps": ["vertebrae"],
    "plans": {"spacing": [4.0, 3.0, 3.0], "patch_size": [24, 32, 32],
              "features_per_stage": [4, 8, 16], "batch_size": 2},
    "folds": 2,
}


def key() -> str:
    """Hash of the fixture's inputs."""
    digest = hashlib.sha256(json.dumps(FIXTURE, sort_keys=True).encode())
    for source in (Path(__file__), Path(tiny.__file__), Path(dataset.__file__)):
        digest.update(source.read_bytes())
    digest.update(f"{package_version('nnunetv2')} {package_version('torch')}".encode())
    return digest.hexdigest()[:16]


def dataset_name() -> str:
    return dataset.dataset_folder(Path(), FIXTURE["dataset_id"], FIXTURE["name"]).name


def model_folder(root: Path) -> Path:
    """The trained configuration's folder under a fixture root."""
    return (root / "results" / dataset_name()
            / f"{tiny.nnUNetTrainerSpineMetsTiny.__name__}__{PLANS}__{CONFIGURATION}")


def _run(command: list[str], env: dict[str, str], log_file: Path) -> None:
    started = time.monotonic()
    with log_file.open("ab") as out:
        out.write(f"$ {' '.join(command)}\n".encode())
        out.flush()
        done = subprocess.run(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                              check=False)
    if done.returncode != 0:
        tail = log_file.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{command[0]} failed ({done.returncode}); end of {log_file}:\n{tail}")
    log.info("%s done (%.0f s)", Path(command[0]).name if command[1] != "-m" else command[2],
             time.monotonic() - started)


def tiny_plans(plans: dict[str, Any]) -> dict[str, Any]:
    """The default plans cut down to :data:`FIXTURE`'s, under the identifier :data:`PLANS`."""
    config = plans["configurations"][CONFIGURATION]
    wanted = FIXTURE["plans"]
    stages = len(wanted["features_per_stage"])
    config.update(spacing=wanted["spacing"], patch_size=wanted["patch_size"],
                  batch_size=wanted["batch_size"], data_identifier=f"{PLANS}_{CONFIGURATION}")
    config["architecture"]["arch_kwargs"].update(
        n_stages=stages, features_per_stage=wanted["features_per_stage"],
        kernel_sizes=[[3, 3, 3]] * stages, strides=[[1, 1, 1]] + [[2, 2, 2]] * (stages - 1),
        n_conv_per_stage=[2] * stages, n_conv_per_stage_decoder=[2] * (stages - 1))
    return {**plans, "plans_name": PLANS, "configurations": {CONFIGURATION: config}}


def _splits(cases: list[str], folds: int) -> list[dict[str, list[str]]]:
    """``folds`` folds over ``cases``, each validating on its own share."""
    share = len(cases) // folds
    return [{"train": [c for c in cases if c not in cases[f * share:(f + 1) * share]],
             "val": cases[f * share:(f + 1) * share]} for f in range(folds)]


def build(root: Path) -> Path:
    """Make the fixture under ``root`` (raw and preprocessed data are removed afterwards)."""
    raw, preprocessed, results = root / "raw", root / "preprocessed", root / "results"
    env = {**os.environ, "nnUNet_raw": str(raw), "nnUNet_preprocessed": str(preprocessed),
           "nnUNet_results": str(results), "nnUNet_def_n_proc": "1"}
    log_file = root / "build.log"
    bin_dir = Path(sys.executable).parent
    folder = dataset.export(raw, FIXTURE["dataset_id"], FIXTURE["name"], FIXTURE["seeds"],
                            FIXTURE["phantom"], FIXTURE["maps"])
    ident = str(FIXTURE["dataset_id"])
    _run([str(bin_dir / "nnUNetv2_plan_and_preprocess"), "-d", ident, "-c", CONFIGURATION,
          "-npfp", "1", "--no_pp"], env, log_file)
    target = preprocessed / folder.name
    plans = json.loads((target / "nnUNetPlans.json").read_text())
    (target / f"{PLANS}.json").write_text(json.dumps(tiny_plans(plans), indent=2))
    _run([str(bin_dir / "nnUNetv2_preprocess"), "-d", ident, "-plans_name", PLANS, "-c",
          CONFIGURATION, "-np", "1"], env, log_file)
    cases = sorted(p.name.removesuffix("_0000.nii.gz") for p in (folder / "imagesTr").iterdir())
    (target / "splits_final.json").write_text(json.dumps(_splits(cases, FIXTURE["folds"])))
    for fold in range(FIXTURE["folds"]):
        _run([sys.executable, "-m", "nnunet_tools.trainers.tiny", folder.name, CONFIGURATION,
              str(fold), "-p", PLANS], {**env, "nnUNet_n_proc_DA": "0"}, log_file)
    shutil.rmtree(raw)
    shutil.rmtree(preprocessed)
    return model_folder(root)


def ensure(cache: Path = CACHE) -> Path:
    """The cached fixture's model folder; built (under a lock) when missing."""
    root = cache / f"fixture-{key()}"
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f"fixture-{key()}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not model_folder(root).is_dir():
            staging = cache / f"building-{key()}"
            shutil.rmtree(staging, ignore_errors=True)
            staging.mkdir()
            started = time.monotonic()
            log.info("building the nnU-Net fixture in %s", staging)
            build(staging)
            staging.rename(root)
            log.info("nnU-Net fixture ready (%.0f s)", time.monotonic() - started)
    return model_folder(root)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nnunet_tools.fixture", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=CACHE)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    print(ensure(args.cache))


if __name__ == "__main__":
    main()
