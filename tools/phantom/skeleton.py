"""Bones, discs and spinal canal of an :class:`~phantom.anatomy.Anatomy` as solids.

Vertebrae are built in the frame of the spine curve at their body centre (x patient left,
y posterior, z cranial along the curve), so each level follows the kyphosis and lordosis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from phantom.anatomy import RIB_DROP, RIB_RADIUS, RIB_REACH, Anatomy, Level
from phantom.shapes import (
    EllipticSlab,
    Frame,
    Primitive,
    RoundBox,
    Solid,
    Vec,
    VertebralBody,
    axes_from,
    capsule,
    upright_axes,
)

SIDES = (1, -1)  # patient left, right
RIB_SHELL = 1.0
CHEST_WALL = 12.0  # soft tissue between subcutaneous fat and pleura (mm)
SACRAL_CANAL_Y = (24.0, 19.0, 14.0, 10.0, 7.0)  # canal centre behind the curve, S1..S5 (mm)


@dataclass(frozen=True)
class Compression:
    """A compression fracture: ``fraction`` of the body height lost (anterior for a wedge)."""

    level: str
    fraction: float
    wedge: bool


def _box(frame: Frame, centre: Vec, half: tuple[float, float, float],
         axes: Vec | None = None) -> RoundBox:
    """A rounded box at a point of ``frame`` (optionally with its own axes)."""
    return RoundBox(frame.at(centre, axes), half, 0.9 * min(half))


def vertebra(anatomy: Anatomy, level: Level, compression: Compression | None = None) -> Solid:
    """Body, pedicles, laminae, spinous and transverse processes, facets; canal carved out."""
    f = anatomy.curve.frame(level.s)
    h, a, b = level.height, level.width / 2, level.depth / 2
    rx, ry = level.canal
    cy = level.canal_y
    pw, ph = level.pedicle
    lt = level.lamina
    loss, wedge = (compression.fraction, compression.wedge) if compression else (0.0, False)
    parts: list[Primitive] = [VertebralBody(f, a, b, h, loss=loss, wedge=wedge)]
    for side in SIDES:
        px = side * (rx + pw / 2 - 1)
        y0, y1 = b - 4.0, cy + 0.5 * ry
        parts.append(_box(f, np.array([px, (y0 + y1) / 2, 0.1 * h]),
                          (pw / 2, (y1 - y0) / 2, ph / 2)))
        p1, p2 = np.array([px, y1]), np.array([0.0, cy + ry + lt / 2])
        along = np.append(p2 - p1, 0.0)
        half_len = float(np.linalg.norm(along)) / 2 + lt / 2
        parts.append(_box(f, np.append((p1 + p2) / 2, -0.05 * h), (half_len, lt / 2, 0.42 * h),
                          upright_axes(along)))
        start, direction = level.transverse_start(side), level.transverse_direction(side)
        length, _, thick = level.transverse
        parts.append(_box(f, start + direction * (length - 2) / 2,
                          (length / 2 + 1, thick / 2, 4.5 + level.lumbar),
                          upright_axes(direction)))
        top = h / 2 + level.disc_above / 2 - 1.5
        bottom = -h / 2 - level.disc_below / 2 + 1.5
        parts.append(_box(f, np.array([side * (rx + pw / 2 + 1), cy + 0.1 * ry + 2,
                                       (0.15 * h + top) / 2]), (3.0, 4.5, (top - 0.15 * h) / 2)))
        parts.append(_box(f, np.array([side * (rx + pw / 2 - 3), cy + 0.3 * ry + 6,
                                       (bottom - 0.15 * h) / 2]),
                          (3.0, 4.5, (-0.15 * h - bottom) / 2)))
    length, angle, width, tall = level.spinous
    down = np.radians(angle)
    direction = np.array([0.0, np.cos(down), -np.sin(down)])
    start = np.array([0.0, cy + ry + 0.3 * lt, -0.1 * h])
    parts.append(_box(f, start + direction * length / 2, (width / 2, tall / 2, length / 2),
                      axes_from(direction, [1, 0, 0], 2)))
    canal_hole = EllipticSlab(f.at((0.0, cy, 0.0)), rx, ry, -h / 2 - level.disc_below / 2 - 2,
                              h / 2 + level.disc_above / 2 + 2)
    return Solid(tuple(parts), (canal_hole,))


def canal(anatomy: Anatomy, level: Level) -> Solid:
    """Cerebrospinal fluid and cord in the canal of one level, from disc middle to disc middle."""
    f = anatomy.curve.frame(level.s)
    rx, ry = level.canal
    top = level.height / 2 + (level.disc_above / 2 + 0.5 if level.index > 0 else 60.0)
    bottom = -level.height / 2 - level.disc_below / 2 - 0.5
    return Solid((EllipticSlab(f.at((0.0, level.canal_y, 0.0)), rx - 0.2, ry - 0.2, bottom, top),))


def discs(anatomy: Anatomy, compressions: Sequence[Compression] = ()) -> list[Solid]:
    """Intervertebral discs C7-T1 .. L5-S1; they fill the space left by compressed bodies."""
    fractions = {c.level: c.fraction for c in compressions}
    levels = [anatomy.c7, *anatomy.levels]
    sac = anatomy.sacrum
    out = []
    for i, upper in enumerate(levels):
        lower_size = ((levels[i + 1].width, levels[i + 1].depth) if i + 1 < len(levels)
                      else (2 * sac.body[0], 2 * sac.body[1]))
        gap = upper.disc_below
        mid = upper.s + upper.height / 2 + gap / 2
        grow_up = grow_down = 0.0
        if upper.name in fractions:
            grow_up = fractions[upper.name] * upper.height / 2
        if i + 1 < len(levels) and levels[i + 1].name in fractions:
            grow_down = fractions[levels[i + 1].name] * levels[i + 1].height / 2
        a = 0.49 * (upper.width + lower_size[0])
        b = 0.49 * (upper.depth + lower_size[1])
        out.append(Solid((EllipticSlab(anatomy.curve.frame(mid), a / 2, b / 2,
                                       -gap / 2 - 2 - grow_down, gap / 2 + 2 + grow_up),)))
    return out


def thorax_ellipse(anatomy: Anatomy, index: int) -> tuple[float, float, float, float]:
    """Left rib-cage ellipse at unit ``index``: centre x, y and half axes in the level frame.

    It runs through the rib centres; the right one is its mirror image. Posteriorly it passes
    just in front of the tip of the transverse process, where the ribs articulate.
    """
    t = anatomy.torso
    level = anatomy.levels[min(index, len(anatomy.levels) - 1)]
    tip = level.transverse_tip(1)
    lateral = t.half_width[index] - t.fat[index] - CHEST_WALL
    anterior = t.back[index] - 2 * t.half_depth[index] + t.fat[index] + CHEST_WALL
    posterior = tip[1] + 6.0
    cx = tip[0] + 25.0
    return cx, (posterior + anterior) / 2, lateral - cx, (posterior - anterior) / 2


def ribs(anatomy: Anatomy) -> list[tuple[str, Solid]]:
    """Left and right ribs of T1..T12: head at the body, neck to the transverse process, shaft
    round the thorax with a level-dependent reach (short T1, longest mid-thorax, floating
    T11/T12) and a drop towards the front."""
    out = []
    for i, level in enumerate(anatomy.levels[:12]):
        f = anatomy.curve.frame(level.s)
        cx, cy, ex, ey = thorax_ellipse(anatomy, i)
        r = RIB_RADIUS[i]
        for side in SIDES:
            head = np.array([side * (0.93 * level.width / 2 + r + 1.5), 0.12 * level.depth,
                             0.3 * level.height])
            tip = level.transverse_tip(side)
            neck = tip + np.array([0.0, -(level.transverse[2] / 2 + r + 1.0), 0.0])
            start = float(np.arccos(np.clip((abs(neck[0]) - cx) / ex, -1, 1)))
            end = start - RIB_REACH[i] * (start + np.radians(110))
            n = max(int(abs(start - end) * (ex + ey) / 2 / 8.0), 3)
            alpha = np.linspace(start, end, n + 1)
            u = (start - alpha) / (start - end)
            shaft = np.stack([side * (cx + ex * np.cos(alpha)), cy + ey * np.sin(alpha),
                              neck[2] - RIB_DROP[i] * u ** 1.5], axis=1)
            path = f.to_world(np.vstack([head, neck, shaft]))
            parts = tuple(capsule(path[k], path[k + 1], r) for k in range(len(path) - 1))
            out.append((level.name, Solid(parts)))
    return out


def sacrum(anatomy: Anatomy) -> tuple[Solid, Solid]:
    """The sacrum S1..S5 and the fluid of its canal.

    Each segment is a body (S1 with its endplate), two alae narrowing caudally and a dorsal
    arch round the sacral canal; the segments follow the curve, which bends back steeply.
    """
    sac = anatomy.sacrum
    parts: list[Primitive] = []
    holes: list[Primitive] = []
    s = sac.s_top
    fluid = None
    for k, length in enumerate(sac.lengths):
        f = anatomy.curve.frame(s + length / 2)
        taper = (1.0, 0.8, 0.62, 0.48, 0.36)[k]
        canal_y = SACRAL_CANAL_Y[k]
        top = length / 2 + 1.5 if k else length / 2 - 3.0
        bottom = -length / 2 - 1.5
        if k == 0:
            parts.append(VertebralBody(f, sac.body[0], sac.body[1], length, concavity=0.04))
        else:
            parts.append(EllipticSlab(f, sac.body[0] * taper, sac.front[k], bottom, top))
        wing = (15.0, 13.0, 10.0, 7.0, 5.0)[k]
        parts.append(EllipticSlab(f.at((0.0, 0.6 * (sac.back[k] - sac.front[k]) / 2, 0.0)),
                                  sac.half_widths[k], wing, bottom, top))
        parts.append(EllipticSlab(f.at((0.0, canal_y, 0.0)), 18.0 * taper,
                                  max(sac.back[k] - canal_y, 5.0), bottom, top))
        if k < len(sac.canal):
            crx, cry = sac.canal[k]
            holes.append(EllipticSlab(f.at((0.0, canal_y, 0.0)), crx, cry, -length / 2 - 2,
                                      length / 2 + 2))
            if k == 0:
                fluid = Solid((EllipticSlab(f.at((0.0, canal_y, 0.0)), crx - 0.2, cry - 0.2,
                                            -length / 2, length / 2 + 6),))
        s += length
    assert fluid is not None
    return Solid(tuple(parts), tuple(holes)), fluid


#: Iliac wing: a quarter ellipse (half axes x, y in mm; x shrinks to stay inside the abdominal
#: wall) from the sacroiliac joint, 6 mm lateral to the S1 ala, to the anterior superior iliac
#: spine; its crest and lower border (mm from the S1 endplate, vertical) along the arc, and its
#: thickness.
_ILIUM_RADII = (60.0, 72.0)
_ILIUM_SEGMENTS = 8


def _ilium_profile(u: float) -> tuple[float, float, float]:
    """Top, bottom and thickness of the iliac wing at fraction ``u`` of its arc."""
    top = 28.0 + 18.0 * np.sin(np.pi * min(u * 1.3, 1.0)) + 4.0 * u
    bottom = -75.0 + 60.0 * u ** 2
    thickness = max(16.0 - 30.0 * u, 6.0)
    return top, bottom, thickness


def ilia(anatomy: Anatomy) -> list[Solid]:
    """Left and right iliac wings (unlabelled bone) beside the sacrum, upright in the pelvis.

    The pelvis turns with the sacrum: the frame is the S1 frame tilted back by 40 degrees,
    so a steeper sacral slope tilts the wings forwards.
    """
    sac = anatomy.sacrum
    s1 = anatomy.curve.frame(sac.s_top)
    tilt = np.radians(-40.0)
    upright = np.array([[1.0, 0.0, 0.0],
                        [0.0, np.cos(tilt), -np.sin(tilt)],
                        [0.0, np.sin(tilt), np.cos(tilt)]])
    pelvis = Frame(s1.origin, s1.axes @ upright)
    u = np.linspace(0.0, 1.0, _ILIUM_SEGMENTS + 1)
    angle = np.pi / 2 * (1 - u)
    torso = anatomy.torso
    inset = torso.fat[-1] + CHEST_WALL + 12.0
    a, b = torso.half_width[-1] - inset, torso.half_depth[-1] - inset
    centre_y = torso.back[-1] - torso.half_depth[-1]
    for scale in np.linspace(1.0, 0.4, 25):
        rx, ry = _ILIUM_RADII[0] * scale, _ILIUM_RADII[1] * scale
        arc_x = sac.half_widths[0] + 6.0 + rx * np.cos(angle)
        arc_y = 14.0 - ry + ry * np.sin(angle)
        if np.all((arc_x / a) ** 2 + ((arc_y - centre_y) / b) ** 2 <= 1):
            break
    out = []
    for side in SIDES:
        parts: list[Primitive] = []
        for k in range(_ILIUM_SEGMENTS):
            start = np.array([side * arc_x[k], arc_y[k]])
            end = np.array([side * arc_x[k + 1], arc_y[k + 1]])
            top, bottom, thickness = _ilium_profile(float(u[k] + u[k + 1]) / 2)
            along = np.append(end - start, 0.0)
            centre = np.append((start + end) / 2, (top + bottom) / 2)
            half = (float(np.linalg.norm(along)) / 2 + 1.0, thickness / 2, (top - bottom) / 2)
            parts.append(RoundBox(pelvis.at(centre, upright_axes(along)), half,
                                  0.9 * thickness / 2))
        out.append(Solid(tuple(parts)))
    return out
