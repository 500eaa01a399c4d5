"""Soft tissues round the spine: body outline, fat, chest wall, lungs, mediastinum, abdominal
organs with visceral fat, and the labelled paraspinal muscles.

They are described per height: a table over anatomy z gives, for each horizontal plane, the
spine centre and the sizes of each structure relative to it (the spine curve, continued
straight down below the sacrum top). Voxels are evaluated in slabs of slices.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from phantom.anatomy import CURVE_STEP, Anatomy
from phantom.canvas import AIR_HU, Canvas, Tissue
from phantom.shapes import F32, Block, Grid, Pose, ellipse_distance
from phantom.skeleton import CHEST_WALL, thorax_ellipse
from spinemets import labels

TABLE_STEP = 1.0  # mm along z
SLAB_VOXELS = 4_000_000
MUSCLE_HALO = 2.0  # fat plane round each labelled muscle (mm)
LUNG_APEX = -40.0  # arc length of the lung apices (above T1)
MUSCLES = ("deep_back_muscle", "psoas_major", "quadratus_lumborum")


@dataclass(frozen=True)
class Table:
    """Per-height parameters: ``columns[name][k]`` at anatomy z = ``z0 + k * TABLE_STEP``."""

    z0: float
    columns: dict[str, npt.NDArray[np.float32]]

    def lookup(self, z: F32) -> npt.NDArray[np.intp]:
        """Nearest table row of each height."""
        n = len(next(iter(self.columns.values())))
        k = z - np.float32(self.z0 - TABLE_STEP / 2)
        k /= np.float32(TABLE_STEP)
        np.clip(k, 0, n - 1, out=k)
        rows: npt.NDArray[np.intp] = k.astype(np.intp)
        return rows


def _bump(s: npt.NDArray[np.float64], start: float, peak: float, end: float,
          height: float) -> npt.NDArray[np.float64]:
    """0 before ``start``, rising to ``height`` at ``peak``, back to 0 at ``end`` (smooth)."""
    rise = np.clip((s - start) / (peak - start), 0, 1)
    fall = np.clip((end - s) / max(end - peak, 1e-6), 0, 1)
    return np.asarray(height * np.sin(np.pi / 2 * np.minimum(rise, fall)) ** 0.7)


def table(anatomy: Anatomy) -> Table:
    """The per-height table of ``anatomy``."""
    curve, lv, sac, torso = anatomy.curve, anatomy.levels, anatomy.sacrum, anatomy.torso
    n = len(curve.points)
    s = curve.s0 + CURVE_STEP * np.arange(n)
    points = curve.points.copy()
    below = s > sac.s_top
    top = curve.point(sac.s_top)
    points[below] = top + np.outer(s[below] - sac.s_top, [0.0, 0.0, -1.0])
    z = points[:, 2]
    z_grid = np.arange(z.min(), z.max() + TABLE_STEP, TABLE_STEP)
    s_at = np.interp(z_grid, z[::-1], s[::-1])
    unit_s = anatomy.unit_s()

    def per_unit(values: npt.ArrayLike) -> npt.NDArray[np.float64]:
        return np.asarray(np.interp(s_at, unit_s, np.asarray(values, dtype=np.float64)))

    thorax = np.array([thorax_ellipse(anatomy, i) for i in range(len(unit_s))])
    thorax[12:] = thorax[11]
    half_w = per_unit([v.width / 2 for v in lv] + [sac.body[0]])
    half_d = per_unit([v.depth / 2 for v in lv] + [sac.body[1]])
    tips = np.array([v.transverse_tip(1) for v in lv] + [lv[-1].transverse_tip(1)])
    muscle = np.asarray(torso.deep_muscle)
    scale = torso.muscle_scale
    by = {v.name: v.s for v in lv}
    s_l1_top = by["L1"] - lv[12].height / 2
    psoas = 21 * scale * np.clip((s_at - s_l1_top + 10) / (by["L5"] - s_l1_top + 10), 0, 1) ** 0.7
    psoas *= np.clip((sac.s_bottom + 40 - s_at) / 30, 0, 1)
    ql = _bump(s_at, s_l1_top - 5, by["L3"], by["L5"], 17 * scale)
    pelvis = np.clip(s_at - sac.s_top, 0, None)
    end = np.clip((sac.s_bottom + 20 - s_at) / 40, 0, 1) ** 0.5
    cols = {
        "s": s_at,
        "x": np.interp(z_grid, z[::-1], points[::-1, 0]),
        "y": np.interp(z_grid, z[::-1], points[::-1, 1]),
        "half_width": per_unit(torso.half_width), "half_depth": per_unit(torso.half_depth),
        "back": per_unit(torso.back), "fat": per_unit(torso.fat),
        "body_y": np.interp(z_grid, z[::-1], points[::-1, 1]) + per_unit(torso.back)
        - per_unit(torso.half_depth),
        "rib_cx": per_unit(thorax[:, 0]), "rib_cy": per_unit(thorax[:, 1]),
        "rib_rx": per_unit(thorax[:, 2]), "rib_ry": per_unit(thorax[:, 3]),
        "mediastinum": per_unit(torso.mediastinum),
        "spine_w": half_w, "spine_d": half_d,
        "tip_x": per_unit(tips[:, 0]), "tip_y": per_unit(tips[:, 1]),
        "deep_x": per_unit(muscle[:, 0]), "deep_y": per_unit(muscle[:, 1]),
        "deep_rx": per_unit(muscle[:, 2]) * end, "deep_ry": per_unit(muscle[:, 3]) * end,
        "psoas_r": psoas,
        "psoas_x": half_w + 0.85 * psoas + 2 + 0.3 * pelvis,
        "psoas_y": -0.2 * half_d + 0.15 * psoas - 0.4 * pelvis,
        "ql_rx": ql, "ql_ry": 0.45 * ql,
        "ql_x": per_unit(tips[:, 0]) + 0.5 * ql + 6, "ql_y": per_unit(tips[:, 1]) - 10,
    }
    return Table(float(z_grid[0]), {k: np.asarray(v, dtype=np.float32) for k, v in cols.items()})


def _muscle_values() -> list[tuple[str, int, int]]:
    """(muscle, catalogue value, side sign: +1 patient left) of the six labelled muscles."""
    return [(name, labels.by_name(f"{name}_{side}").value, sign)
            for name in MUSCLES for side, sign in (("left", 1), ("right", -1))]


def paint_soft_tissue(canvas: Canvas, anatomy: Anatomy, pose: Pose) -> None:
    """Paint everything that is not bone, disc or canal, slab by slab."""
    tab = table(anatomy)
    nz, ny, nx = canvas.grid.shape
    step = max(1, SLAB_VOXELS // (ny * nx))
    for k0 in range(0, nz, step):
        block = _body_block(canvas.grid, (slice(k0, min(k0 + step, nz)), slice(0, ny),
                                          slice(0, nx)), pose, tab)
        if block is not None:
            _paint_slab(canvas, block, anatomy, pose, tab)


def _to_anatomy(pose: Pose, x: F32, y: F32, z: F32) -> tuple[F32, F32, F32]:
    """Undo the pose: anatomy coordinates of patient points (broadcastable arrays)."""
    rot = pose.rotation.astype(np.float32)
    shift = (pose.pivot + pose.translation).astype(np.float32)
    px, py, pz = x - shift[0], y - shift[1], z - shift[2]
    ax, ay, az = ((px * rot[0, i] + py * rot[1, i] + np.float32(pose.pivot[i]))
                  + pz * rot[2, i] for i in range(3))
    return ax, ay, az


def _body_block(grid: Grid, block: Block, pose: Pose, tab: Table) -> Block | None:
    """Part of a slab that may hold the body (its bounding box, undoing and redoing the pose)."""
    corners = np.array(list(itertools.product(*(
        (float(grid.origin[a] + grid.spacing[a] * sl.start),
         float(grid.origin[a] + grid.spacing[a] * (sl.stop - 1)))
        for a, sl in zip((0, 1, 2), (block[2], block[1], block[0]), strict=True)))))
    anat = (corners - pose.pivot - pose.translation) @ pose.rotation + pose.pivot
    rows = tab.lookup(anat[:, 2].astype(np.float32))
    c = tab.columns
    rows_sl = slice(int(rows.min()), int(rows.max()) + 1)
    half_w = float(c["half_width"][rows_sl].max()) + 2
    cy = c["y"][rows_sl] + c["back"][rows_sl] - c["half_depth"][rows_sl]
    y_lo = float((cy - c["half_depth"][rows_sl]).min()) - 2
    y_hi = float((cy + c["half_depth"][rows_sl]).max()) + 2
    x = c["x"][rows_sl]
    box = np.array(list(itertools.product(
        (float(x.min()) - half_w, float(x.max()) + half_w), (y_lo, y_hi),
        (float(anat[:, 2].min()), float(anat[:, 2].max())))))
    world = pose.apply(box)
    found = grid.block(world.min(axis=0), world.max(axis=0))
    if found is None:
        return None
    return (block[0], found[1], found[2])


class _Voxels:
    """A 1-D selection of voxels with their anatomy coordinates and table rows."""

    def __init__(self, rows: npt.NDArray[np.intp], tab: Table, **coords: F32) -> None:
        self.rows = rows
        self.tab = tab
        self.c = coords

    def col(self, name: str) -> F32:
        return self.tab.columns[name][self.rows]

    def subset(self, which: npt.NDArray[np.intp]) -> _Voxels:
        return _Voxels(self.rows[which], self.tab, **{k: v[which] for k, v in self.c.items()})


def _paint_slab(canvas: Canvas, block: Block, anatomy: Anatomy, pose: Pose,
                tab: Table) -> None:
    ax, ay, az = _to_anatomy(pose, *canvas.grid.coordinates(block))
    rows = tab.lookup(az)
    c = tab.columns
    dx = ax - c["x"][rows]
    body = ellipse_distance(dx, ay - c["body_y"][rows], c["half_width"][rows],
                            c["half_depth"][rows])
    where = np.flatnonzero(body < np.float32(canvas.ramp / 2))
    if not where.size:
        return
    vox = _Voxels(rows.ravel()[where], tab, dx=dx.ravel()[where], ax=ax.ravel()[where],
                  ay=ay.ravel()[where], az=az.ravel()[where], body=body.ravel()[where])
    vox.c["dy"] = vox.c["ay"] - vox.col("y")
    hu = np.full(vox.rows.shape, AIR_HU, dtype=np.float32)
    tissue = np.zeros(vox.rows.shape, dtype=np.uint8)
    muscles = np.zeros(vox.rows.shape, dtype=np.uint8)
    _paint_body(canvas, anatomy, vox, hu, tissue)
    if float(vox.col("s").min()) < anatomy.level("T12").s + 5:
        _paint_lungs(canvas, anatomy, vox, hu, tissue)
    _paint_muscles(canvas, anatomy, vox, hu, tissue, muscles)
    for target, values in ((canvas.hu, hu), (canvas.tissue, tissue), (canvas.muscles, muscles)):
        full = target[block].copy()
        full.ravel()[where] = values
        target[block] = full


def _blend(canvas: Canvas, hu: F32, tissue: npt.NDArray[np.uint8], d: F32,
           value: float | F32, kind: Tissue | npt.NDArray[np.uint8],
           at: npt.NDArray[np.intp] | None = None) -> None:
    """Blend ``value`` into ``hu`` (at indices ``at``, or everywhere) with distance ``d``."""
    f = canvas.fraction(d)
    if at is None:
        hu += f * (value - hu)
        inside = d <= 0
        tissue[inside] = kind if isinstance(kind, Tissue) else kind[inside]
    else:
        hu[at] += f * (value - hu[at])
        inside = d <= 0
        tissue[at[inside]] = kind if isinstance(kind, Tissue) else kind[inside]


def _paint_body(canvas: Canvas, anatomy: Anatomy, vox: _Voxels, hu: F32,
                tissue: npt.NDArray[np.uint8]) -> None:
    """Subcutaneous fat, chest and abdominal wall, organs with visceral fat."""
    tis = anatomy.tissues
    dx, dy = vox.c["dx"], vox.c["dy"]
    a, b, fat = vox.col("half_width"), vox.col("half_depth"), vox.col("fat")
    cy = vox.col("back") - b
    _blend(canvas, hu, tissue, vox.c["body"], tis.fat, Tissue.FAT)
    inner = ellipse_distance(dx, dy - cy, a - fat, b - fat)
    _blend(canvas, hu, tissue, np.maximum(inner, dy - vox.col("tip_y")), tis.soft, Tissue.SOFT)
    cavity = ellipse_distance(dx, dy - cy, a - fat - CHEST_WALL, b - fat - CHEST_WALL)
    at = np.flatnonzero(cavity < np.float32(canvas.ramp / 2))
    inside = vox.subset(at)
    x, y, z = inside.c["ax"], inside.c["ay"], inside.c["az"]
    field = np.ones_like(x)
    total = np.zeros_like(x)
    for n, (kx, ky, kz, phase) in enumerate(tis.waves):
        field *= np.sin(x * np.float32(kx) + y * np.float32(ky) + z * np.float32(kz)
                        + np.float32(phase))
        if n % 2:
            total += field
            field = np.ones_like(x)
    threshold = np.float32(0.707 * NormalDist().inv_cdf(1 - tis.visceral_fat))
    fatty = total > threshold
    organ = np.where(fatty, np.float32(tis.fat), np.float32(tis.soft))
    kinds = np.where(fatty, np.uint8(Tissue.FAT), np.uint8(Tissue.SOFT)).astype(np.uint8)
    _blend(canvas, hu, tissue, cavity[at], organ, kinds, at)


def _paint_lungs(canvas: Canvas, anatomy: Anatomy, all_vox: _Voxels, hu: F32,
                 tissue: npt.NDArray[np.uint8]) -> None:
    """Both lungs inside the rib cage, outside the mediastinum, above the diaphragm domes."""
    base = np.float32(anatomy.level("T12").s + 5)
    at = np.flatnonzero((all_vox.col("s") < base)
                        & (np.abs(all_vox.c["dx"]) > all_vox.col("spine_w")))
    vox = all_vox.subset(at)
    s, dx, dy = vox.col("s"), vox.c["dx"], vox.c["dy"]
    cx, cy = vox.col("rib_cx"), vox.col("rib_cy")
    ex, ey = vox.col("rib_rx") - np.float32(7), vox.col("rib_ry") - np.float32(7)
    w, dep, tip = vox.col("spine_w"), vox.col("spine_d"), vox.col("tip_x")
    ant = cy - ey
    half = np.float32(0.5)
    med = ellipse_distance(dx - np.float32(8), dy - (ant - dep - 2) * half, vox.col("mediastinum"),
                           np.maximum((-dep - 2 - ant) * half + 5, np.float32(5)))
    adx = np.abs(dx)
    lung = np.maximum(-med, -np.maximum(adx - (w + 6), -dep - 8 - dy))
    lung = np.maximum(lung, -np.maximum(adx - (tip + 4), -dy))
    lung = np.maximum(lung, np.float32(LUNG_APEX) - s)
    right_dome, left_dome = anatomy.torso.lung_dome
    ux, uy = adx - cx, dy - cy
    rho2 = np.minimum((ux / ex) ** 2 + (uy / ey) ** 2, 1)
    dome = np.where(dx > 0, np.float32(left_dome), np.float32(right_dome))
    side = np.maximum(ellipse_distance(ux, uy, ex, ey), s - (base - dome * (1 - rho2)))
    _blend(canvas, hu, tissue, np.maximum(lung, side), anatomy.tissues.lung, Tissue.LUNG, at)


def _paint_muscles(canvas: Canvas, anatomy: Anatomy, all_vox: _Voxels, hu: F32,
                   tissue: npt.NDArray[np.uint8], muscles: npt.NDArray[np.uint8]) -> None:
    """The six labelled muscles, each in a thin fat plane."""
    reach = np.float32(MUSCLE_HALO + canvas.ramp)
    columns = {"deep_back_muscle": ("deep_x", "deep_y", "deep_rx", "deep_ry"),
               "psoas_major": ("psoas_x", "psoas_y", "psoas_r", "psoas_r"),
               "quadratus_lumborum": ("ql_x", "ql_y", "ql_rx", "ql_ry")}
    for name, value, sign in _muscle_values():
        cx, cy, crx, cry = columns[name]
        x = np.float32(sign) * all_vox.col(cx)
        y, rx = all_vox.col(cy), all_vox.col(crx)
        ry = all_vox.col(cry) * np.float32(0.85 if name == "psoas_major" else 1.0)
        at = np.flatnonzero((rx > 1) & (np.abs(all_vox.c["dx"] - x) < rx + reach)
                            & (np.abs(all_vox.c["dy"] - y) < ry + reach))
        if not at.size:
            continue
        d = ellipse_distance(all_vox.c["dx"][at] - x[at], all_vox.c["dy"][at] - y[at],
                             rx[at], ry[at])
        _blend(canvas, hu, tissue, d - np.float32(MUSCLE_HALO), anatomy.tissues.fat,
               Tissue.FAT, at)
        _blend(canvas, hu, tissue, d, anatomy.tissues.muscle[value - 101], Tissue.MUSCLE, at)
        muscles[at[d <= 0]] = value
