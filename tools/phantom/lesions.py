"""Metastatic lesions and compression fractures: where they go and how they are painted.

Lesions are bumpy ellipsoids inside a vertebra (the body, or optionally a pedicle): lytic ones
replace bone, including the cortex, by -100..+50 HU; blastic ones raise the marrow to
+600..+1200 HU; mixed ones have a lytic core in a blastic rim. Their label is their extent
inside the host vertebra's label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from phantom.anatomy import Anatomy, Level
from phantom.canvas import Canvas, Tissue, blend
from phantom.options import LesionKind, PhantomOptions
from phantom.shapes import Blob, Frame, Pose, Solid, evaluate
from phantom.skeleton import Compression
from spinemets import labels

MIXED_CORE = 0.45  # share of the radius that is lytic in a mixed lesion


@dataclass(frozen=True)
class Lesion:
    level: str
    kind: LesionKind
    blob: Blob  # unposed
    hu: tuple[float, float]  # lytic, blastic value (only the relevant one is used)
    site: str  # "body" or "pedicle"

    @property
    def value(self) -> int:
        value: int = labels.by_name(f"lesion_{self.kind}").value
        return value

    @property
    def diameter(self) -> float:
        return 2 * float(np.mean(self.blob.radii))


def _random_axes(rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """A random rotation matrix."""
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return np.asarray(q)


def _bump(rng: np.random.Generator) -> tuple[float, float, float, float]:
    """A random unit direction and phase of one surface undulation."""
    d = _random_axes(rng)[:, 0]
    return float(d[0]), float(d[1]), float(d[2]), float(rng.uniform(0, 2 * np.pi))


@dataclass(frozen=True)
class _Draw:
    """The random numbers of one lesion, drawn in a fixed order."""

    kind: LesionKind
    u: npt.NDArray[np.float64]
    pedicle: bool
    side: int
    diameter_u: float
    shape_u: npt.NDArray[np.float64]
    hu: tuple[float, float]
    axes: npt.NDArray[np.float64]
    bumps: tuple[tuple[float, float, float, float], ...]


def _draw(rng: np.random.Generator, kinds: Sequence[LesionKind], posterior: bool) -> _Draw:
    kind = kinds[int(rng.integers(len(kinds)))]
    u = rng.uniform(-1, 1, 3)
    pedicle = posterior and rng.random() < 0.3
    side = 1 if rng.random() < 0.5 else -1
    diameter_u, shape_u = rng.random(), rng.uniform(0.85, 1.15, 3)
    hu = (float(rng.uniform(-100, 50)), float(rng.uniform(600, 1200)))
    axes = _random_axes(rng)
    bumps = tuple(_bump(rng) for _ in range(3))
    return _Draw(kind, u, pedicle, side, diameter_u, shape_u, hu, axes, bumps)


def _lesion(anatomy: Anatomy, level: Level, draw: _Draw, compression: Compression | None
            ) -> Lesion:
    frame, radius = _site(anatomy, level, draw.pedicle, draw.side, draw.u, draw.diameter_u,
                          compression)
    radii = tuple(float(radius * v) for v in draw.shape_u)
    blob = Blob(Frame(frame.origin, frame.axes @ draw.axes), (radii[0], radii[1], radii[2]),
                draw.bumps, 0.12)
    return Lesion(level.name, draw.kind, blob, draw.hu, "pedicle" if draw.pedicle else "body")


def plan_lesions(options: PhantomOptions, anatomy: Anatomy, candidates: Sequence[str],
                 compression: Compression | None) -> list[Lesion]:
    """Place ``options.lesions`` lesions at distinct random levels among ``candidates``."""
    rng = np.random.default_rng(np.random.SeedSequence([options.seed, 30]))
    order = list(rng.permutation(len(labels.LEVELS)))
    chosen = [labels.LEVELS[i] for i in order if labels.LEVELS[i] in candidates]
    out = []
    for n in range(len(labels.LEVELS)):
        draw = _draw(rng, options.lesion_kinds, options.posterior_lesions)
        if n >= min(options.lesions, len(chosen)):
            continue
        out.append(_lesion(anatomy, anatomy.level(chosen[n]), draw, compression))
    return out


def new_lesion(rng: np.random.Generator, anatomy: Anatomy, level: str,
               kinds: Sequence[LesionKind], compression: Compression | None) -> Lesion:
    """A random lesion in the body of ``level`` (``compression``: a fracture of that level)."""
    return _lesion(anatomy, anatomy.level(level), _draw(rng, kinds, False), compression)


def overlaps(a: Lesion, b: Lesion, gap: float) -> bool:
    """Whether two lesions may come closer than ``gap`` mm (bounding spheres)."""
    reach = (max(a.blob.radii) + max(b.blob.radii)) * (1 + a.blob.amplitude) + gap
    return bool(np.linalg.norm(a.blob.frame.origin - b.blob.frame.origin) < reach)


def _site(anatomy: Anatomy, level: Level, pedicle: bool, side: int,
          u: npt.NDArray[np.float64], diameter_u: float, compression: Compression | None
          ) -> tuple[Frame, float]:
    """Frame (centre) and radius of a lesion in a pedicle or anywhere in the body."""
    f = anatomy.curve.frame(level.s)
    if pedicle:
        radius = 0.5 * (5 + diameter_u * (level.pedicle[0] + 3 - 5))
        centre = np.array([side * (level.canal[0] + level.pedicle[0] / 2 - 1),
                           (level.depth / 2 - 4 + level.canal_y + 0.5 * level.canal[1]) / 2,
                           0.1 * level.height])
        return f.at(centre), radius
    a, b, h = level.width / 2, level.depth / 2, level.height
    if compression is not None and compression.level == level.name:
        h *= 1 - compression.fraction
    biggest = min(20.0, 0.8 * min(2 * a, 2 * b, h))
    radius = 0.5 * (5 + diameter_u * max(biggest - 5, 0))
    angle, r = np.pi * u[0], np.sqrt(abs(u[1]))
    centre = np.array([r * np.cos(angle) * max(a - 0.5 * radius - 1, 0),
                       r * np.sin(angle) * max(0.85 * b - 0.5 * radius - 1, 0),
                       u[2] * max(h / 2 - 0.5 * radius - 1, 0) * 0.5])
    return f.at(centre), radius


def paint_lesion(canvas: Canvas, lesion: Lesion, host: Solid, shell: float, pose: Pose,
                 host_value: int) -> int:
    """Paint a lesion inside its (posed) host vertebra; return its voxel count."""
    blob = Blob(lesion.blob.frame.posed(pose), lesion.blob.radii, lesion.blob.bumps,
                lesion.blob.amplitude)
    found = evaluate(Solid((blob,)), canvas.grid, canvas.ramp)
    if found is None:
        return 0
    block, d = found
    host_found = evaluate(host, canvas.grid, canvas.ramp, within=block)
    assert host_found is not None
    host_d = host_found[1]
    hu = canvas.hu[block]
    in_host = canvas.fraction(host_d)
    in_marrow = canvas.fraction(host_d + np.float32(shell))
    lytic, blastic = lesion.hu
    core = d + np.float32(MIXED_CORE * float(np.mean(blob.radii)))
    if lesion.kind == "lytic":
        blend(hu, canvas.fraction(d) * in_host, lytic)
    elif lesion.kind == "blastic":
        blend(hu, canvas.fraction(d) * in_marrow, blastic)
    else:
        blend(hu, canvas.fraction(d) * in_marrow, blastic)
        blend(hu, canvas.fraction(core) * in_host, lytic)
    inside = (d <= 0) & (host_d <= 0) & (canvas.vertebrae[block] == host_value)
    tissue = canvas.tissue[block]
    if lesion.kind == "blastic":
        tissue[inside] = Tissue.BLASTIC
    elif lesion.kind == "lytic":
        tissue[inside] = Tissue.LYTIC
    else:
        tissue[inside] = np.where(core[inside] <= 0, Tissue.LYTIC, Tissue.BLASTIC)
    canvas.lesions[block][inside] = lesion.value
    return int(inside.sum())
