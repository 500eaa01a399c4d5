"""Training data: phantoms at the model spacing, cached on disk, and random training patches.

Phantoms are generated in canonical LPS (``(z, y, x)`` arrays with z towards Superior) and
stored on the model grid as ``.npz`` (HU ``int16`` image and ``uint8`` channel target), in one
of two ways (:data:`PhantomGrid`): painted directly on the model grid (``"model"``), or, as
nnU-Net prepares its training data, painted on a scanner grid drawn by the generator (0.6-1 mm
pixels, 1-3 mm slices) and resampled to the model grid exactly as the segmenter resamples a CT
(``"scanner"``: the image linearly, the target one channel at a time, linearly, then argmax).
The second gives the network the images it is served: edges, slice profile and partial volume
of a clinical series seen through the resampling.
Targets are network output channels of one role's :class:`Target`: for the vertebra model
0 background, 1..17 T1..L5, 18 sacrum (:data:`CHANNELS`); every other structure of the phantom
is background. The muscle and lesion targets are defined in :mod:`demomodel.roles`.

Patches follow nnU-Net's sampler, with more foreground: a share of them (half by default) are
centred on a voxel of a foreground class picked uniformly among the classes of the case (so every
level is seen equally often), the rest anywhere; parts outside the volume are padded with water,
0 after normalisation (as the sliding window pads), and background in the target. Augmentation
is light: left-right mirroring (only where the labels are not lateral: never for muscles), a
field of view truncated along z (as in clinical scans that stop inside a patch), intensity scale
and shift, Gaussian noise.

A role that the segmenter runs inside a box around the vertebrae (``segmenter.crops``: the
lesion model) is trained on the same boxes: its phantoms are cropped to the vertebrae T1-L5
grown by the same margin and to at least the patch (:class:`Crop`), so that training patches
come from where the served model runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt
from scipy import ndimage

import phantom
from phantom.generator import HU_RANGE
from segmenter.crop import box_around
from segmenter.resampling import to_spacing
from spinemets import labels
from spinemets.labelmaps import LabelMap

#: Output channel -> catalogue name.
CHANNELS: tuple[str, ...] = ("background", *(labels.vertebra(lv).name for lv in labels.LEVELS),
                             "sacrum")

#: Phantom seeds, disjoint ranges far above the small seeds the test suites use.
TRAIN_SEEDS = range(1_000_000, 2_000_000)
VALIDATION_SEEDS = range(2_000_000, 3_000_000)
EVALUATION_SEEDS = range(3_000_000, 4_000_000)

Shape3 = tuple[int, int, int]
Scalar = TypeVar("Scalar", bound=np.generic)
#: ``options(seed, spacing_zyx)``: the training phantom of a seed on the model grid.
OptionsOf = Callable[[int, Sequence[float]], phantom.PhantomOptions]
TruthMap = Literal["vertebrae", "muscles", "lesions"]
#: Where training phantoms are painted: on the model grid, or on a scanner grid and resampled.
PhantomGrid = Literal["model", "scanner"]


def value_to_channel(channels: Sequence[str] = CHANNELS) -> npt.NDArray[np.uint8]:
    """Lookup table from catalogue label value (0..255) to output channel."""
    lut = np.zeros(256, dtype=np.uint8)
    for channel, name in enumerate(channels[1:], start=1):
        lut[labels.by_name(name).value] = channel
    return lut


@dataclass(frozen=True)
class Normalization:
    """nnU-Net ``CTNormalization``: clip HU to ``[lower, upper]``, then ``(x - mean) / std``."""

    lower: float
    upper: float
    mean: float
    std: float

    def apply(self, hu: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
        clipped = np.clip(hu.astype(np.float32), self.lower, self.upper)
        return ((clipped - self.mean) / self.std).astype(np.float32)

    def as_json(self) -> dict[str, float | str]:
        """The ``normalization`` entry of model.json."""
        return {"scheme": "CTNormalization", "mean": self.mean, "std": self.std,
                "lower": self.lower, "upper": self.upper}


#: Fixed normalisation: the whole CT range from air to dense cortex is kept (lung and soft tissue
#: tell thoracic from lumbar levels), and 0, the sliding window's padding, is water.
NORMALIZATION = Normalization(lower=-1000.0, upper=1500.0, mean=0.0, std=500.0)


@dataclass(frozen=True)
class Case:
    """One phantom on the model grid: HU image and channel target, both ``(z, y, x)``."""

    seed: int
    image: npt.NDArray[np.int16]
    target: npt.NDArray[np.uint8]

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, image=self.image, target=self.target, seed=self.seed)
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> Case:
        with np.load(path) as data:
            return cls(int(data["seed"]), data["image"], data["target"])


def phantom_options(seed: int, spacing_zyx: Sequence[float]) -> phantom.PhantomOptions:
    """Training phantom ``seed``: random field of view (a third full spine), 0-3 lesions, a
    compression fracture in a quarter of them, drawn from the seed."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
    full_spine = bool(rng.random() < 1 / 3)
    lesions = int(rng.integers(0, 4))
    compression = "random" if rng.random() < 0.25 else None
    return phantom.PhantomOptions(seed=seed, spacing=(spacing_zyx[2], spacing_zyx[1],
                                                      spacing_zyx[0]),
                                  full_spine=full_spine, lesions=lesions, compression=compression)


@dataclass(frozen=True)
class Crop:
    """The box a role's phantoms are cropped to, as the segmenter crops (``segmenter.crop``):
    the vertebrae T1-L5 grown by ``margin_mm``, and to at least ``min_extent_mm`` (z, y, x)."""

    margin_mm: float
    min_extent_mm: tuple[float, float, float]


@dataclass(frozen=True)
class Target:
    """What a role learns: the phantom label map it reads, its channels, its phantoms, and the
    box they are cropped to (None: whole phantoms)."""

    role: str
    truth: TruthMap
    channels: tuple[str, ...]
    options: OptionsOf
    crop: Crop | None = None

    def folder(self, spacing_zyx: Sequence[float], grid: PhantomGrid = "model") -> str:
        """Cache folder name: spacing, phantom grid, crop and generator hash (and the role,
        except vertebrae)."""
        name = f"{'x'.join(f'{s:g}' for s in spacing_zyx)}-{phantom_fingerprint()}"
        if grid == "scanner":
            name = f"scanner-{name}"
        if self.crop is not None:
            name = f"crop{self.crop.margin_mm:g}-{name}"
        return name if self.role == "vertebrae" else f"{self.role}-{name}"


def make_case(options: phantom.PhantomOptions, target: Target | None = None,
              resample_to: Sequence[float] | None = None,
              clip: tuple[float, float] = HU_RANGE) -> Case:
    """Generate one phantom (the vertebra target by default), cropped as the target says; it is
    already in canonical LPS order (identity direction).

    ``resample_to`` (z, y, x mm): the phantom is painted on its own grid (``options.spacing``,
    or the scanner grid the generator draws when that is None) and resampled to this spacing
    as the segmenter resamples a CT: HU clipped to ``clip`` (the model's normalisation window)
    and resampled linearly, the target by :func:`resample_channels`.
    """
    target = target or VERTEBRAE
    generated = phantom.generate(options)
    if not np.allclose(generated.ct.geometry.direction, np.eye(3)):
        raise ValueError("training phantoms must be generated in canonical LPS orientation")
    truth: LabelMap = getattr(generated, target.truth)
    image, channels = generated.ct.array, value_to_channel(target.channels)[truth.array]
    spacing = generated.ct.geometry.spacing
    spacing_zyx = (spacing[2], spacing[1], spacing[0])
    vertebra_values = [label.value for label in labels.in_group(labels.Group.VERTEBRA)]
    vertebrae = (None if target.crop is None
                 else np.isin(generated.vertebrae.array, vertebra_values))
    if resample_to is not None:
        target_zyx = (resample_to[0], resample_to[1], resample_to[2])
        image = np.rint(to_spacing(image, spacing_zyx, target_zyx, clip)).astype(np.int16)
        channels = resample_channels(channels, len(target.channels), spacing_zyx, target_zyx)
        if vertebrae is not None:
            vertebrae = resample_channels(vertebrae.view(np.uint8), 2, spacing_zyx,
                                          target_zyx).view(bool)
        spacing_zyx = target_zyx
    if target.crop is not None and vertebrae is not None:
        box = box_around(vertebrae, spacing_zyx, target.crop.margin_mm,
                         target.crop.min_extent_mm)
        if box is None:
            raise ValueError(f"phantom {options.seed} has no vertebra T1-L5 to crop around")
        image, channels = np.ascontiguousarray(image[box]), np.ascontiguousarray(channels[box])
    return Case(options.seed, image, channels)


def resample_channels(channels: npt.NDArray[np.uint8], count: int,
                      spacing_zyx: tuple[float, float, float],
                      target_zyx: tuple[float, float, float]) -> npt.NDArray[np.uint8]:
    """A channel map resampled as nnU-Net resamples segmentations: each channel's mask
    linearly (on the segmenter's edge-aligned grid), then the argmax (ties: lower channel)."""
    best = to_spacing((channels == 0).astype(np.int16), spacing_zyx, target_zyx, (0.0, 1.0))
    out = np.zeros(best.shape, dtype=np.uint8)
    for channel in range(1, count):
        mask = channels == channel
        if not mask.any():
            continue
        share = to_spacing(mask.astype(np.int16), spacing_zyx, target_zyx, (0.0, 1.0))
        better = share > best
        best[better] = share[better]
        out[better] = channel
    return out


def phantom_fingerprint() -> str:
    """Hash of the phantom generator's source: a changed generator never reuses a stale cache."""
    digest = hashlib.sha256()
    for path in sorted(Path(phantom.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


#: The vertebra model's target.
VERTEBRAE = Target("vertebrae", "vertebrae", CHANNELS, phantom_options)


def cached_cases(seeds: Sequence[int], spacing_zyx: Sequence[float], directory: Path,
                 target: Target = VERTEBRAE, grid: PhantomGrid = "model",
                 normalization: Normalization = NORMALIZATION) -> list[Case]:
    """The phantoms of ``seeds`` at ``spacing_zyx``, painted on ``grid``, generated once into
    ``directory``; scanner-grid images are clipped to ``normalization``'s window before they
    are resampled, as the segmenter does."""
    folder = directory / target.folder(spacing_zyx, grid)
    cases = []
    for seed in seeds:
        path = folder / f"{seed}.npz"
        if path.exists():
            cases.append(Case.load(path))
            continue
        options = target.options(seed, spacing_zyx)
        if grid == "scanner":
            case = make_case(replace(options, spacing=None), target, resample_to=spacing_zyx,
                             clip=(normalization.lower, normalization.upper))
        else:
            case = make_case(options, target)
        case.save(path)
        cases.append(case)
    return cases


@dataclass(frozen=True)
class Augmentation:
    """Probabilities and ranges of the training augmentations (normalised intensity units)."""

    mirror_x: float = 0.5
    truncate_z: float = 0.2
    scale: tuple[float, float] = (0.9, 1.1)
    shift: tuple[float, float] = (-0.1, 0.1)
    noise_sigma: tuple[float, float] = (0.0, 0.1)

    @property
    def mirror_axes(self) -> list[int]:
        """The axes (model.json's ``mirror_axes``) a model trained with these is mirrored on."""
        return [2] if self.mirror_x > 0 else []


class PatchSampler:
    """Random training patches (nnU-Net style foreground oversampling) from cached cases."""

    def __init__(self, cases: Sequence[Case], normalization: Normalization, patch: Shape3,
                 rng: np.random.Generator, *, foreground_fraction: float = 0.5,
                 augmentation: Augmentation | None = None) -> None:
        self._images = [c.image for c in cases]
        self._targets = [c.target for c in cases]
        self._normalization = normalization
        self._patch = patch
        self._rng = rng
        self._foreground_fraction = foreground_fraction
        self._augmentation = augmentation or Augmentation()
        self._locations = [_class_locations(t, rng) for t in self._targets]

    def batch(self, size: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """``size`` patches: image ``[N, 1, *patch]`` float32, target ``[N, *patch]`` int64."""
        images, targets = zip(*(self._sample(i < round(size * self._foreground_fraction))
                                for i in range(size)), strict=True)
        return np.stack(images)[:, None], np.stack(targets).astype(np.int64)

    def _sample(self, foreground: bool
                ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8]]:
        index = int(self._rng.integers(len(self._images)))
        image, target, locations = self._images[index], self._targets[index], self._locations[index]
        if foreground and locations:
            classes = sorted(locations)
            voxels = locations[classes[int(self._rng.integers(len(classes)))]]
            centre = voxels[int(self._rng.integers(len(voxels)))]
            start = [int(c) - p // 2 for c, p in zip(centre, self._patch, strict=True)]
        else:
            start = [int(self._rng.integers(-(p // 2), max(n - p // 2, 1 - p // 2) + 1))
                     for n, p in zip(image.shape, self._patch, strict=True)]
        x = self._normalization.apply(_crop(image, start, self._patch, self._normalization.mean))
        y = _crop(target, start, self._patch, 0)
        return self._augment(x, y)

    def _augment(self, x: npt.NDArray[np.float32], y: npt.NDArray[np.uint8]
                 ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8]]:
        aug, rng = self._augmentation, self._rng
        if rng.random() < aug.mirror_x:
            x, y = x[:, :, ::-1], y[:, :, ::-1]
        if rng.random() < aug.truncate_z:
            cut = int(rng.integers(x.shape[0] // 4, 3 * x.shape[0] // 4))
            keep = slice(cut, None) if rng.random() < 0.5 else slice(None, cut)
            x_cut, y_cut = np.zeros_like(x), np.zeros_like(y)
            x_cut[keep], y_cut[keep] = x[keep], y[keep]
            x, y = x_cut, y_cut
        scaled = x * rng.uniform(*aug.scale) + rng.uniform(*aug.shift)
        noisy = scaled + rng.normal(0.0, rng.uniform(*aug.noise_sigma), x.shape)
        return np.ascontiguousarray(noisy, dtype=np.float32), np.ascontiguousarray(y)


def _class_locations(target: npt.NDArray[np.uint8], rng: np.random.Generator,
                     per_class: int = 2000) -> dict[int, npt.NDArray[np.intp]]:
    """Up to ``per_class`` random voxel indices ``(z, y, x)`` of every foreground channel."""
    found: dict[int, npt.NDArray[np.intp]] = {}
    for channel, box in enumerate(ndimage.find_objects(target), start=1):
        if box is None:
            continue
        voxels = np.argwhere(target[box] == channel) + np.array([s.start for s in box])
        if len(voxels) > per_class:
            voxels = voxels[rng.choice(len(voxels), per_class, replace=False)]
        found[channel] = voxels
    return found


def _crop(array: npt.NDArray[Scalar], start: Sequence[int], patch: Shape3,
          fill: float) -> npt.NDArray[Scalar]:
    """``array[start:start+patch]`` with the parts outside the array filled with ``fill``."""
    out = np.full(patch, fill, dtype=array.dtype)
    src = tuple(slice(max(s, 0), min(s + p, n))
                for s, p, n in zip(start, patch, array.shape, strict=True))
    dst = tuple(slice(max(s, 0) - s, max(s, 0) - s + (sl.stop - sl.start))
                for s, sl in zip(start, src, strict=True))
    if all(sl.stop > sl.start for sl in src):
        out[dst] = array[src]
    return out
