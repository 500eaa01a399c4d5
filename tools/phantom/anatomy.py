"""Random but plausible anatomy of one phantom: spine curve, level dimensions, torso, HU values.

Everything here depends on the seed only (never on the grid), in anatomy coordinates: DICOM
LPS millimetres before the pose, with the top of T1 at the origin and the spine running down -z.
Arc length ``s`` along the spine curve grows caudally from 0 at the top of T1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from scipy.interpolate import PchipInterpolator

from phantom.shapes import Frame, Vec
from spinemets import labels

#: Spine units from cranial to caudal: T1..L5 then the sacrum.
UNITS: tuple[str, ...] = (*labels.LEVELS, "sacrum")
SACRUM_VALUE = labels.by_name("sacrum").value
CURVE_STEP = 0.5  # mm of arc length between curve samples
#: Knots (level index) of level-dependent sizes: T1, T6, T12, L1, L3, L5.
_SIZE_KNOTS = (0, 5, 11, 12, 14, 16)
_HEIGHT = (15.0, 18.0, 22.5, 24.0, 26.0, 27.0)
_WIDTH = (25.0, 30.0, 40.0, 42.0, 47.0, 50.0)
_DEPTH = (17.0, 24.0, 29.0, 31.0, 34.0, 35.0)
#: Disc below each level (T1-T2 .. L5-S1).
_DISC = np.interp(np.arange(17), (0, 5, 10, 11, 12, 14, 16), (4, 4.5, 6, 7, 8, 10, 10.5))
#: Ribs T1..T12: share of the half thorax they go round, drop of their front end (mm), radius.
RIB_REACH = (0.55, 0.75, 0.85, 0.9, 0.92, 0.93, 0.92, 0.88, 0.8, 0.7, 0.42, 0.28)
RIB_DROP = (20.0, 32.0, 42.0, 50.0, 56.0, 60.0, 60.0, 56.0, 50.0, 40.0, 22.0, 12.0)
RIB_RADIUS = (4.5, 4.2, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 3.9, 3.8, 3.5, 3.2)


def _f(x: float | np.floating[npt.NBitBase]) -> float:
    return round(float(x), 3)


@dataclass(frozen=True)
class Level:
    """One vertebra T1..L5: body and posterior-element dimensions (mm) and bone HU."""

    name: str
    index: int
    value: int
    s: float  # arc length of the body centre
    height: float
    width: float
    depth: float
    disc_above: float
    disc_below: float
    lumbar: float  # 0 thoracic .. 1 lumbar shape
    canal: tuple[float, float]  # half width, half depth of the spinal canal
    pedicle: tuple[float, float]  # width, height
    lamina: float  # thickness
    spinous: tuple[float, float, float, float]  # length, angle down (deg), width, height
    transverse: tuple[float, float, float]  # length, angle back (deg), thickness
    cortex_hu: float
    trabecular_hu: float
    shell: float  # cortical thickness

    @property
    def canal_y(self) -> float:
        """Local y of the canal centre, just behind the posterior wall of the body."""
        return self.depth / 2 + self.canal[1] - 1.0

    def transverse_start(self, side: int) -> Vec:
        return np.array([side * (self.canal[0] + self.pedicle[0] - 1.0),
                         self.canal_y + 0.2 * self.canal[1], 0.05 * self.height])

    def transverse_direction(self, side: int) -> Vec:
        back = np.radians(self.transverse[1])
        up = np.radians(10.0 * (1 - self.lumbar))
        return np.array([side * np.cos(back) * np.cos(up), np.sin(back) * np.cos(up), np.sin(up)])

    def spinous_reach(self) -> float:
        """Local y of the most posterior point of the spinous process."""
        length, angle, _, tall = self.spinous
        down = np.radians(angle)
        start = self.canal_y + self.canal[1] + 0.3 * self.lamina
        return float(start + length * np.cos(down) + tall / 2 * np.sin(down))

    def transverse_tip(self, side: int) -> Vec:
        return self.transverse_start(side) + self.transverse[0] * self.transverse_direction(side)


@dataclass(frozen=True)
class Sacrum:
    """Sacrum S1..S5 as segments along the curve from ``s_top``."""

    s_top: float
    lengths: tuple[float, ...]
    half_widths: tuple[float, ...]
    front: tuple[float, ...]  # anterior half depth of the segment
    back: tuple[float, ...]  # dorsal extent behind the curve
    canal: tuple[tuple[float, float], ...]
    body: tuple[float, float]  # half width, half depth of the S1 body
    cortex_hu: float
    trabecular_hu: float
    shell: float

    @property
    def s_bottom(self) -> float:
        return self.s_top + sum(self.lengths)


@dataclass(frozen=True)
class Tissues:
    """HU of the soft tissues and acquisition-independent texture parameters."""

    lung: float
    fat: float
    soft: float
    muscle: tuple[float, ...]  # six muscles in catalogue order 101..106
    csf: float
    disc: float
    visceral_fat: float  # share of the abdominal cavity that is fat
    waves: tuple[tuple[float, ...], ...]  # wave vector (1/mm, 3 values) and phase


@dataclass(frozen=True)
class Torso:
    """Torso shape, as values at the spine units (interpolated along s)."""

    half_width: tuple[float, ...]  # body outline half width (x) per unit
    half_depth: tuple[float, ...]  # body outline half depth (y)
    back: tuple[float, ...]  # posterior skin behind the vertebral body centre
    fat: tuple[float, ...]  # subcutaneous fat thickness
    deep_muscle: tuple[tuple[float, float, float, float], ...]  # centre x, y, half x, half y
    mediastinum: tuple[float, ...]  # half width of the mediastinum
    lung_dome: tuple[float, float]  # dome height of the diaphragm, right and left
    muscle_scale: float


@dataclass(frozen=True)
class CurveShape:
    """What shapes the spine curve: kyphosis and lordosis factors, lateral sway (mm, phase)."""

    kyphosis: float
    lordosis: float
    sway_mm: float
    sway_phase: float


@dataclass(frozen=True)
class Curve:
    """The spine curve sampled every :data:`CURVE_STEP` mm of arc length from ``s0``."""

    s0: float
    points: Vec  # (n, 3)
    axes: Vec  # (n, 3, 3): local x, y, z as columns
    shape: CurveShape

    def _index(self, s: float) -> tuple[int, float]:
        t = (s - self.s0) / CURVE_STEP
        i = int(np.clip(np.floor(t), 0, len(self.points) - 2))
        return i, float(np.clip(t - i, 0.0, 1.0))

    def point(self, s: float) -> Vec:
        i, w = self._index(s)
        return np.asarray((1 - w) * self.points[i] + w * self.points[i + 1])

    def frame(self, s: float) -> Frame:
        """Frame at arc length ``s``: x patient left, y posterior, z cranial along the curve."""
        i, w = self._index(s)
        ez = (1 - w) * self.axes[i, :, 2] + w * self.axes[i + 1, :, 2]
        ez /= np.linalg.norm(ez)
        ex = np.array([1.0, 0.0, 0.0]) - ez[0] * ez
        ex /= np.linalg.norm(ex)
        return Frame(self.point(s), np.stack([ex, np.cross(ez, ex), ez], axis=1))


@dataclass(frozen=True)
class Anatomy:
    """The whole seed-dependent anatomy."""

    seed: int
    curve: Curve
    levels: tuple[Level, ...]
    sacrum: Sacrum
    tissues: Tissues
    torso: Torso

    @property
    def c7(self) -> Level:
        """The C7 vertebra above T1: bone without a label and without ribs."""
        t1 = self.levels[0]
        return c7_from(t1)

    def level(self, name: str) -> Level:
        level: Level = self.levels[labels.LEVELS.index(name)]
        return level

    def unit_s(self) -> npt.NDArray[np.float64]:
        """Arc length of the centre of each unit (levels, then the S1 body)."""
        return np.array([lv.s for lv in self.levels] + [self.sacrum.s_top + 13.0])


def c7_from(t1: Level) -> Level:
    """C7 (vertebra prominens) derived from T1: smaller body, wider canal, long spine."""
    height = 0.92 * t1.height
    s = t1.s - t1.height / 2 - t1.disc_above - height / 2
    return replace(t1, name="C7", index=-1, value=0, height=_f(height), width=_f(0.88 * t1.width),
                   depth=_f(0.9 * t1.depth), s=_f(s), disc_below=t1.disc_above, canal=(10.0, 7.0),
                   spinous=(40.0, 20.0, 7.0, 9.0), transverse=(22.0, 10.0, 6.0))


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, stream]))


def _jitter(rng: np.random.Generator, n: int, sd: float, limit: float) -> npt.NDArray[np.float64]:
    return np.asarray(1 + np.clip(rng.normal(0, sd, n), -limit, limit))


def _levels(rng: np.random.Generator) -> tuple[list[Level], float]:
    n = len(labels.LEVELS)
    idx = np.arange(n)
    size = rng.uniform(0.92, 1.08)
    height = np.interp(idx, _SIZE_KNOTS, _HEIGHT) * size * _jitter(rng, n, 0.03, 0.06)
    width = np.interp(idx, _SIZE_KNOTS, _WIDTH) * size * _jitter(rng, n, 0.03, 0.06)
    depth = np.interp(idx, _SIZE_KNOTS, _DEPTH) * size * _jitter(rng, n, 0.03, 0.06)
    disc = _DISC * size * _jitter(rng, n, 0.06, 0.12)
    lumbar = np.interp(idx, (9, 12), (0.0, 1.0))
    cortex = np.clip(rng.uniform(760, 940) + rng.normal(0, 25, n), 700, 1000)
    trabecular_base = rng.uniform(165, 285)
    trabecular = np.clip(trabecular_base * (1.04 - 0.06 * idx / (n - 1))
                         + rng.normal(0, 8, n), 150, 300)
    shell = rng.uniform(1.0, 1.4)
    spinous_angle = np.interp(idx, (0, 2, 8, 9, 10, 11, 12), (25, 50, 55, 45, 35, 25, 8))
    transverse_length = np.interp(idx, (0, 5, 9, 10, 11, 12, 13, 14, 15, 16),
                                  (24, 20, 17, 14, 10, 14, 18, 24, 21, 19))
    post = size * _jitter(rng, n, 0.04, 0.08)
    levels: list[Level] = []
    s = 0.0
    for i, name in enumerate(labels.LEVELS):
        lum, h, p = float(lumbar[i]), float(height[i]), float(post[i])
        s += h / 2
        levels.append(Level(
            name=name, index=i, value=labels.vertebra(name).value, s=_f(s), height=_f(h),
            width=_f(width[i]), depth=_f(depth[i]),
            disc_above=_f(disc[i - 1]) if i else 4.0, disc_below=_f(disc[i]), lumbar=lum,
            canal=(_f((7.5 + 3.5 * lum) * p), _f((7.0 + 1.5 * lum) * p)),
            pedicle=(_f((6.0 + 3.0 * lum) * p), _f(max(0.65 * h, 9.0))),
            lamina=_f(6.0 + lum),
            spinous=(_f((33.0 - 3 * lum) * p), _f(spinous_angle[i]), _f(6.0 + 2.0 * lum),
                     _f((9.0 + 12.0 * lum) * p)),
            transverse=(_f(transverse_length[i] * p), _f(35.0 - 30.0 * lum), _f(6.0 + lum)),
            cortex_hu=_f(cortex[i]), trabecular_hu=_f(trabecular[i]), shell=_f(shell),
        ))
        s += h / 2 + float(disc[i])
    return levels, s


def _curve_shape(rng: np.random.Generator) -> CurveShape:
    kyphosis, lordosis = rng.uniform(0.6, 1.4), rng.uniform(0.6, 1.4)
    amplitude, phase = rng.uniform(-4, 4), rng.uniform(0, 2 * np.pi)
    return CurveShape(kyphosis, lordosis, amplitude, phase)


def _curve(shape: CurveShape, levels: Sequence[Level], sacrum: Sacrum) -> Curve:
    kyphosis, lordosis = shape.kyphosis, shape.lordosis
    by = {lv.name: lv.s for lv in levels}
    t12_bottom = by["T12"] + levels[11].height / 2
    knots_s = (0.0, by["T4"], by["T7"], by["T10"], t12_bottom, by["L2"], by["L3"], by["L4"],
               by["L5"], sacrum.s_top, sacrum.s_top + 50.0, sacrum.s_bottom + 20.0)
    slope = 34.0 + 6.0 * lordosis
    knots_deg = (18 * kyphosis, 10 * kyphosis, 0.0, -8 * kyphosis, -14 * kyphosis,
                 -8 * lordosis, 0.0, 10 * lordosis, 20 * lordosis, slope, slope + 18, 80.0)
    angle = PchipInterpolator(knots_s, np.radians(knots_deg), extrapolate=False)
    s0 = -60.0
    s = np.arange(s0, sacrum.s_bottom + 60.0, CURVE_STEP)
    theta = angle(np.clip(s, knots_s[0], knots_s[-1]))
    x = shape.sway_mm * np.sin(2 * np.pi * s / 500.0 + shape.sway_phase)
    y = np.cumsum(np.sin(theta)) * CURVE_STEP
    z = -np.cumsum(np.cos(theta)) * CURVE_STEP
    at0 = round(-s0 / CURVE_STEP)
    points = np.stack([x - x[at0], y - y[at0], z - z[at0]], axis=1)
    ez = -np.gradient(points, axis=0)
    ez /= np.linalg.norm(ez, axis=1, keepdims=True)
    ex = np.array([1.0, 0.0, 0.0])[None, :] - ez[:, :1] * ez
    ex /= np.linalg.norm(ex, axis=1, keepdims=True)
    axes = np.stack([ex, np.cross(ez, ex), ez], axis=2)
    return Curve(s0, points, axes, shape)


def _sacrum(rng: np.random.Generator, l5: Level, s_top: float) -> Sacrum:
    size = rng.uniform(0.92, 1.08)
    lengths = tuple(_f(v * size) for v in (26, 22, 18, 16, 14))
    return Sacrum(
        s_top=_f(s_top), lengths=lengths,
        half_widths=tuple(_f(v * size) for v in (48, 40, 30, 21, 13)),
        front=tuple(_f(v) for v in (l5.depth / 2, 14, 11, 8, 6)),
        back=tuple(_f(v * size) for v in (22, 17, 12, 8, 5)),
        canal=((11.0, 6.0), (9.0, 5.0), (7.0, 4.0)),
        body=(_f(l5.width / 2 * 1.04), _f(l5.depth / 2)),
        cortex_hu=_f(np.clip(l5.cortex_hu + rng.normal(0, 20), 700, 1000)),
        trabecular_hu=_f(np.clip(l5.trabecular_hu + rng.normal(0, 10), 150, 300)),
        shell=l5.shell,
    )


def _tissues(rng: np.random.Generator) -> Tissues:
    """Soft-tissue HU and the visceral fat texture."""
    muscle = rng.uniform(44, 56)
    waves = []
    for _ in range(4):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        k = 2 * np.pi / rng.uniform(40, 90)
        waves.append((*(float(v) for v in direction * k), float(rng.uniform(0, 2 * np.pi))))
    return Tissues(
        lung=_f(rng.uniform(-870, -830)), fat=_f(rng.uniform(-110, -90)),
        soft=_f(rng.uniform(35, 55)),
        muscle=tuple(_f(np.clip(muscle + rng.normal(0, 2), 40, 60))
                     for _ in range(6)),
        csf=_f(rng.uniform(15, 35)), disc=_f(rng.uniform(80, 100)),
        visceral_fat=_f(rng.uniform(0.15, 0.5)), waves=tuple(waves),
    )


def _torso(rng: np.random.Generator, reach: npt.NDArray[np.float64]) -> Torso:
    """Torso of the units; ``reach`` is how far behind each body centre the bone goes."""
    units = np.arange(len(UNITS))
    size = rng.uniform(0.85, 1.15)
    depth = size * rng.uniform(0.9, 1.1)
    fat = rng.uniform(6, 32)
    muscle = rng.uniform(0.85, 1.15)
    half_width = np.interp(units, (0, 3, 7, 11, 14, 17), (125, 145, 155, 155, 160, 175)) * size
    front = np.interp(units, (0, 4, 9, 14, 17), (100, 135, 145, 140, 130)) * depth
    fat_unit = fat * np.interp(units, (0, 11, 14), (0.7, 0.9, 1.2))
    mx = np.interp(units, (0, 11, 13), (26, 30, 36)) * muscle
    my = np.interp(units, (0, 11, 13), (44, 48, 58)) * muscle
    rx = np.interp(units, (0, 11, 13, 16, 17), (16, 21, 29, 30, 24)) * muscle
    ry = np.interp(units, (0, 11, 13, 16, 17), (12, 14, 21, 22, 16)) * muscle
    back = np.maximum(my + ry + 4, reach + 6) + 0.8 * fat_unit
    half_depth = (front + back) / 2
    mediastinum = np.interp(units, (0, 3, 5, 8, 10, 11), (22, 30, 55, 65, 50, 40)) * size
    return Torso(
        half_width=tuple(_f(v) for v in half_width), half_depth=tuple(_f(v) for v in half_depth),
        back=tuple(_f(v) for v in back), fat=tuple(_f(v) for v in fat_unit),
        deep_muscle=tuple((_f(a), _f(b), _f(c), _f(d)) for a, b, c, d in zip(mx, my, rx, ry,
                                                                              strict=True)),
        mediastinum=tuple(_f(v) for v in mediastinum),
        lung_dome=(_f(rng.uniform(60, 80)), _f(rng.uniform(45, 65))), muscle_scale=_f(muscle),
    )


def build(seed: int) -> Anatomy:
    """The anatomy of phantom ``seed`` (independent of grid, field of view and pose)."""
    levels, s_sacrum = _levels(_rng(seed, 1))
    sacrum = _sacrum(_rng(seed, 2), levels[-1], s_sacrum)
    curve = _curve(_curve_shape(_rng(seed, 3)), levels, sacrum)
    top_y = curve.point(sacrum.s_top)[1]
    starts = sacrum.s_top + np.cumsum((0.0, *sacrum.lengths[:-1]))
    sacral_reach = max(curve.point(s + length)[1] - top_y + back
                       for s, length, back in zip(starts, sacrum.lengths, sacrum.back, strict=True))
    reach = np.array([lv.spinous_reach() for lv in levels] + [sacral_reach])
    reach[0] = max(reach[0], c7_from(levels[0]).spinous_reach())
    return Anatomy(seed, curve, tuple(levels), sacrum, _tissues(_rng(seed, 4)),
                   _torso(_rng(seed, 5), reach))


def bent(anatomy: Anatomy, shape: CurveShape) -> Anatomy:
    """The same anatomy on a spine curve of another shape (same arc lengths).

    Every vertebra, rib and lesion is built in the curve frame of its level, so each moves
    rigidly with that frame; discs, canal and soft tissues follow the curve.
    """
    return replace(anatomy, curve=_curve(shape, anatomy.levels, anatomy.sacrum))
