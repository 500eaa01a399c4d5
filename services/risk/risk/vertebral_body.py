"""The vertebral body: its axis, its separation from the posterior elements, its heights.

Method [D] (docs/risk-methods.md):

1. Frame. The vertebral axis is the direction of the spine through the body centroids of the
   neighbouring levels (central difference; one-sided at the ends of the field of view); a
   vertebra without neighbours takes the smallest principal axis of its body. The posterior
   direction points from the body to the posterior elements.
2. Body. Along rays in the mid-sagittal band of the vertebra, from anterior to posterior, the
   first bony run is the body and the gap after it is the spinal canal: the body is the
   vertebra anterior to the canal's front (median over rays), largest connected part. A label
   without posterior elements (no canal on the rays) is all body. Frame and split are computed
   twice: from whole-vertebra centroids, then from body centroids.
3. Heights. Anterior, middle and posterior heights are measured parallel to the axis in the
   mid-sagittal plane, the anterior and posterior ones a configured fraction of the depth
   inside the body's edges (median of a 3 x 3 bundle of lines); left and right heights
   likewise in the mid-coronal plane. Height loss compares each height with the same height of
   the neighbouring levels (their mean); ratios Ha/Hp and Hm/Hp are the within-vertebra
   indices of Genant's morphometry.

A vertebra touching the border of the volume is *truncated*: its volume, heights and
everything derived are reported missing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from risk.frames import (
    F64,
    POSTERIOR,
    SUPERIOR,
    Frame,
    axis_range,
    frame_from,
    index_to_patient,
    run_through,
    runs,
    sample,
)
from risk.method_settings import MeasurementSettings
from risk.values import Measured, Missing, known
from spinemets import labels
from spinemets.geometry import Geometry
from spinemets.labelmaps import LabelMap

#: Voxels of margin round a vertebra's crop (for trilinear sampling at its border).
CROP_MARGIN = 3
#: Shortest bony run along a ray that counts as the vertebral body (mm).
MIN_BODY_RUN_MM = 5.0
#: Largest angle between a vertebra's own principal axis and the initial axis (degrees).
MAX_PCA_ANGLE_DEG = 35.0
#: Largest ratio of the smallest to the middle principal variance for the axis to be used.
MAX_PCA_RATIO = 0.75

#: A neighbour whose Ha/Hp or Hm/Hp is below this is deformed and no height reference [D].
REFERENCE_RATIO = 0.8

TRUNCATED = Missing("truncated", "vertebra cut by the border of the volume")


@dataclass
class VertebraVoxels:
    """One vertebra in a crop of the volume: mask, crop offset and voxel coordinates."""

    level: str
    offset: tuple[int, int, int]
    mask: npt.NDArray[np.bool_]
    truncated: bool
    points: F64  # patient coordinates of the mask voxels, in np.nonzero order

    @property
    def crop(self) -> tuple[slice, slice, slice]:
        return (slice(self.offset[0], self.offset[0] + self.mask.shape[0]),
                slice(self.offset[1], self.offset[1] + self.mask.shape[1]),
                slice(self.offset[2], self.offset[2] + self.mask.shape[2]))

    def patient(self, mask: npt.NDArray[np.bool_], geometry: Geometry) -> F64:
        """Patient coordinates of the voxels of a mask on this crop."""
        return index_to_patient(geometry, np.argwhere(mask) + np.asarray(self.offset))


@dataclass(frozen=True)
class BodySplit:
    """The body part of a vertebra's crop, and how it was found."""

    body: npt.NDArray[np.bool_] | None
    method: str


@dataclass(frozen=True)
class BodyHeights:
    """Heights of the body parallel to its axis (mm)."""

    anterior_mm: Measured
    middle_mm: Measured
    posterior_mm: Measured
    left_mm: Measured
    right_mm: Measured


@dataclass(frozen=True)
class VertebraGeometry:
    """Volumes, frame, depth, width, heights and wedge angles of one vertebra."""

    level: str
    truncated: bool
    frame: Frame  # origin: body centroid (or vertebra centroid if no body was found)
    split_method: str
    vertebra_voxels: int
    vertebra_volume_ml: float
    body_volume_ml: Measured
    posterior_elements_volume_ml: Measured
    depth_mm: Measured
    width_mm: Measured
    heights: BodyHeights
    #: Positive: anterior lower than posterior (kyphotic wedge).
    wedge_sagittal_deg: Measured
    #: Positive: left higher than right.
    wedge_coronal_deg: Measured


@dataclass(frozen=True)
class HeightLoss:
    """Height loss against the neighbouring levels (fraction, positive = lower)."""

    anterior: Measured
    middle: Measured
    posterior: Measured
    maximum: Measured
    reference_levels: tuple[str, ...]
    anterior_posterior_ratio: Measured
    middle_posterior_ratio: Measured


def vertebra_voxels(label_map: LabelMap, geometry: Geometry) -> dict[str, VertebraVoxels]:
    """Every vertebra T1-L5 present in ``label_map``, cranial to caudal."""
    array = label_map.array
    shape = array.shape
    boxes = ndimage.find_objects(array) if array.size else []
    found: dict[str, VertebraVoxels] = {}
    for label in labels.in_group(labels.Group.VERTEBRA):
        values = [v for v, name in label_map.labels.items() if name == label.name]
        parts = [boxes[v - 1] for v in values if 0 < v <= len(boxes) and boxes[v - 1]]
        if not parts:
            continue
        lo = [min(p[a].start for p in parts) for a in range(3)]
        hi = [max(p[a].stop for p in parts) for a in range(3)]
        truncated = any(lo[a] == 0 or hi[a] == shape[a] for a in range(3))
        lo = [max(lo[a] - CROP_MARGIN, 0) for a in range(3)]
        hi = [min(hi[a] + CROP_MARGIN, shape[a]) for a in range(3)]
        crop = array[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
        mask = np.isin(crop, values)
        offset = (lo[0], lo[1], lo[2])
        points = index_to_patient(geometry, np.argwhere(mask) + np.asarray(offset))
        found[label.name.removeprefix("vertebra_")] = VertebraVoxels(
            label.name.removeprefix("vertebra_"), offset, mask, truncated, points)
    return found


def split_body(v: VertebraVoxels, frame: Frame, geometry: Geometry, step: float = 0.5
               ) -> BodySplit:
    """Separate the body from the posterior elements at the front of the spinal canal."""
    local = frame.to_local(v.points)
    front = local[local[:, 1] <= np.median(local[:, 1])]
    z_lo, z_hi = np.percentile(front[:, 2], [5, 95])
    z_half = 0.3 * (z_hi - z_lo)
    ys = axis_range(float(local[:, 1].min()) - 2, float(local[:, 1].max()) + 2, step)
    walls: list[float] = []
    solid = 0
    for x in (-1.5, 0.0, 1.5):
        for z in np.linspace(float(np.mean(front[:, 2])) - z_half,
                             float(np.mean(front[:, 2])) + z_half, 7):
            line = np.stack([np.full_like(ys, x), ys, np.full_like(ys, z)], axis=1)
            inside = sample(v.mask, geometry, frame.to_patient(line), 1, v.offset) > 0.5
            body_run = next(((a, b) for a, b in runs(inside)
                             if (b - a + 1) * step >= MIN_BODY_RUN_MM), None)
            if body_run is None:
                continue
            if body_run[1] == ys.size - 1 or not inside[body_run[1] + 1:].any():
                solid += 1
            else:
                walls.append(float(ys[body_run[1]]) + step / 2)
    if len(walls) >= 7:
        wall = float(np.median(walls))
        coords = np.argwhere(v.mask)
        keep = local[:, 1] <= wall
        body = np.zeros(v.mask.shape, dtype=bool)
        body[tuple(coords[keep].T)] = True
        parts, count = ndimage.label(body)
        if count > 1:
            sizes = np.bincount(parts.ravel())
            sizes[0] = 0
            body = parts == int(np.argmax(sizes))
        return BodySplit(body, "anterior to the spinal canal")
    if solid >= 7:
        return BodySplit(v.mask.copy(), "label without posterior elements: all body")
    return BodySplit(None, "no vertebral body found along the mid-sagittal rays")


def _neighbour_axes(centres: Mapping[str, F64], usable: set[str]) -> dict[str, F64 | None]:
    """Spine direction (cranial) at each level from the centres of its usable neighbours.

    Central difference where there is a neighbour on each side (the nearest within two
    levels). At an end of the spine in view, the chord to the one neighbour, reflected about
    the neighbour's own central tangent where it has one (on a circular arc the chord bisects
    the tangents at its ends).
    """

    def nearest(i: int, sign: int) -> str | None:
        for j in (i + sign, i + 2 * sign):
            if 0 <= j < len(labels.LEVELS) and labels.LEVELS[j] in usable:
                return labels.LEVELS[j]
        return None

    def unit(v: F64) -> F64:
        return np.asarray(v / np.linalg.norm(v))

    central: dict[str, F64] = {}
    for level in centres:
        i = labels.LEVELS.index(level)
        above, below = nearest(i, -1), nearest(i, 1)
        if above is not None and below is not None:
            central[level] = unit(centres[above] - centres[below])
    out: dict[str, F64 | None] = {}
    for level, c in centres.items():
        if level in central:
            out[level] = central[level]
            continue
        i = labels.LEVELS.index(level)
        above, below = nearest(i, -1), nearest(i, 1)
        other = above if above is not None else below
        if other is None:
            out[level] = None
            continue
        chord = unit(centres[other] - c if other == above else c - centres[other])
        tangent = central.get(other)
        out[level] = chord if tangent is None else unit(2 * (chord @ tangent) * chord - tangent)
    return out


def _principal_axis(points: F64, near: F64) -> F64 | None:
    """The smallest principal axis of a point cloud, if clearly the smallest and within
    MAX_PCA_ANGLE_DEG of ``near``."""
    if len(points) < 10:
        return None
    centred = points - points.mean(axis=0)
    values, vectors = np.linalg.eigh(centred.T @ centred)
    if values[0] > MAX_PCA_RATIO * values[1]:
        return None  # no clearly shortest axis (upper thoracic bodies are as tall as deep)
    axis = vectors[:, 0]
    cos = float(axis @ near)
    if abs(cos) < np.cos(np.radians(MAX_PCA_ANGLE_DEG)):
        return None
    return np.asarray(axis if cos > 0 else -axis)


def locate_bodies(voxels: Mapping[str, VertebraVoxels], geometry: Geometry
                  ) -> dict[str, tuple[Frame, BodySplit]]:
    """Frame and body of every vertebra (two passes: vertebra centroids, then body centroids)."""
    centres = {lv: v.points.mean(axis=0) for lv, v in voxels.items()}
    usable = {lv for lv, v in voxels.items() if not v.truncated}
    axes = _neighbour_axes(centres, usable)
    first: dict[str, tuple[Frame, BodySplit]] = {}
    for lv, v in voxels.items():
        initial = axes[lv]
        frame = frame_from(centres[lv], SUPERIOR if initial is None else initial)
        first[lv] = (frame, split_body(v, frame, geometry))
    body_centres: dict[str, F64] = {}
    posterior: dict[str, F64] = {}
    for lv, (_, split) in first.items():
        v = voxels[lv]
        if split.body is None:
            body_centres[lv] = centres[lv]
            continue
        pts = v.patient(split.body, geometry)
        body_centres[lv] = pts.mean(axis=0)
        rest = v.mask & ~split.body
        if rest.sum() >= 0.05 * v.mask.sum():
            posterior[lv] = v.patient(rest, geometry).mean(axis=0) - body_centres[lv]
    axes = _neighbour_axes(body_centres, usable)
    final: dict[str, tuple[Frame, BodySplit]] = {}
    for lv, v in voxels.items():
        frame0, split0 = first[lv]
        axis = axes[lv]
        if axis is None and split0.body is not None:
            axis = _principal_axis(v.patient(split0.body, geometry), frame0.axis)
        if axis is None:
            axis = frame0.axis
        frame = frame_from(body_centres[lv], axis, posterior.get(lv, POSTERIOR))
        split = split_body(v, frame, geometry)
        if split.body is not None:
            frame = frame.moved_to(v.patient(split.body, geometry).mean(axis=0))
        final[lv] = (frame, split)
    return final


def _extent(mask: npt.NDArray[np.bool_], v: VertebraVoxels, geometry: Geometry, frame: Frame,
            point: F64, along: int, lo: float, hi: float, step: float
            ) -> tuple[float, float] | None:
    """First and last position (local coordinate ``along``) of the run of ``mask`` on the line
    through local ``point`` along local axis ``along`` that contains ``point`` (or is nearest)."""
    t = axis_range(lo, hi, step)
    line = np.repeat(point[None, :], t.size, axis=0)
    line[:, along] = t
    inside = sample(mask, geometry, frame.to_patient(line), 1, v.offset) > 0.5
    at = int(np.argmin(np.abs(t - point[along])))
    found = run_through(inside, at)
    if found is None:
        return None
    return float(t[found[0]]) - step / 2, float(t[found[1]]) + step / 2


def _height(mask: npt.NDArray[np.bool_], v: VertebraVoxels, geometry: Geometry, frame: Frame,
            x: float, y: float, z_range: tuple[float, float],
            settings: MeasurementSettings) -> Measured:
    """Median height of a 3 x 3 bundle of lines parallel to the axis round local (x, y)."""
    b = settings.height_bundle_mm
    heights = []
    for dx in (-b, 0.0, b):
        for dy in (-b, 0.0, b):
            run = _extent(mask, v, geometry, frame, np.array([x + dx, y + dy, 0.0]), 2,
                          z_range[0], z_range[1], settings.line_step_mm)
            if run is not None:
                heights.append(run[1] - run[0])
    if len(heights) < 5:
        return Missing("no-height", "the body is not found along the height lines")
    return float(np.median(heights))


def measure_geometry(level: str, v: VertebraVoxels, frame: Frame, split: BodySplit,
                     geometry: Geometry, settings: MeasurementSettings) -> VertebraGeometry:
    """Volumes, depth, width, heights and wedge angles of one vertebra."""
    voxel_ml = geometry.voxel_volume_mm3 / 1000.0
    n = int(v.mask.sum())
    if split.body is None or v.truncated:
        reason = TRUNCATED if v.truncated else Missing("no-body", split.method)
        return VertebraGeometry(level, v.truncated, frame, split.method, n, n * voxel_ml,
                                reason, reason, reason, reason, BodyHeights(*(reason,) * 5),
                                reason, reason)
    body = split.body
    nb = int(body.sum())
    local = frame.to_local(v.patient(body, geometry))
    lo, hi = local.min(axis=0) - 3, local.max(axis=0) + 3
    step = settings.line_step_mm
    ap = _extent(body, v, geometry, frame, np.zeros(3), 1, lo[1], hi[1], step)
    if ap is None:
        none = Missing("no-body", "the body is not found on its mid-sagittal line")
        return VertebraGeometry(level, False, frame, split.method, n, n * voxel_ml, nb * voxel_ml,
                                (n - nb) * voxel_ml, none, none, BodyHeights(*(none,) * 5), none,
                                none)
    y_ant, y_post = ap
    depth = y_post - y_ant
    y_mid = (y_ant + y_post) / 2
    lateral = _extent(body, v, geometry, frame, np.array([0.0, y_mid, 0.0]), 0, lo[0], hi[0],
                      step)
    inset = settings.height_inset_fraction
    z_range = (float(lo[2]), float(hi[2]))
    y_a, y_p = y_ant + inset * depth, y_post - inset * depth
    h_a = _height(body, v, geometry, frame, 0.0, y_a, z_range, settings)
    h_m = _height(body, v, geometry, frame, 0.0, y_mid, z_range, settings)
    h_p = _height(body, v, geometry, frame, 0.0, y_p, z_range, settings)
    width: Measured = Missing("no-width", "the body is not found on its mid-coronal line")
    h_l: Measured = width
    h_r: Measured = width
    if lateral is not None:
        x_right, x_left = lateral
        width = x_left - x_right
        x_l, x_r = x_left - inset * width, x_right + inset * width
        h_l = _height(body, v, geometry, frame, x_l, y_mid, z_range, settings)
        h_r = _height(body, v, geometry, frame, x_r, y_mid, z_range, settings)
    sagittal: Measured = Missing("no-height", "anterior or posterior height missing")
    if not isinstance(h_a, Missing) and not isinstance(h_p, Missing):
        sagittal = float(np.degrees(np.arctan2(h_p - h_a, y_p - y_a)))
    coronal: Measured = Missing("no-height", "left or right height missing")
    if (not isinstance(h_l, Missing) and not isinstance(h_r, Missing)
            and not isinstance(width, Missing)):
        coronal = float(np.degrees(np.arctan2(h_l - h_r, (1 - 2 * inset) * width)))
    return VertebraGeometry(level, False, frame, split.method, n, n * voxel_ml, nb * voxel_ml,
                            (n - nb) * voxel_ml, depth, width,
                            BodyHeights(h_a, h_m, h_p, h_l, h_r), sagittal, coronal)


def _ratio(a: Measured, b: Measured) -> Measured:
    if isinstance(a, Missing):
        return a
    if isinstance(b, Missing):
        return b
    return a / b


def _undeformed(g: VertebraGeometry, limit: float) -> bool:
    """A usable reference: in view, all heights measured, Ha/Hp and Hm/Hp at least ``limit``."""
    h = g.heights
    values = [known(v) for v in (h.anterior_mm, h.middle_mm, h.posterior_mm)]
    if g.truncated or any(v is None for v in values):
        return False
    ha, hm, hp = (float(v) for v in values if v is not None)
    return min(ha, hm) >= limit * hp


def height_losses(geometries: Sequence[VertebraGeometry],
                  reference_ratio: float = REFERENCE_RATIO) -> dict[str, HeightLoss]:
    """Height loss of each vertebra against its direct neighbours (mean of their heights).

    A neighbour that is itself deformed (Ha/Hp or Hm/Hp below ``reference_ratio``) is no
    reference; without an undeformed neighbour the loss is missing.
    """
    by_level = {g.level: g for g in geometries}
    out: dict[str, HeightLoss] = {}
    for g in geometries:
        i = labels.LEVELS.index(g.level)
        refs = [by_level[labels.LEVELS[j]] for j in (i - 1, i + 1)
                if 0 <= j < len(labels.LEVELS) and labels.LEVELS[j] in by_level
                and _undeformed(by_level[labels.LEVELS[j]], reference_ratio)]
        h = g.heights
        losses: list[Measured] = []
        for name in ("anterior_mm", "middle_mm", "posterior_mm"):
            own = getattr(h, name)
            ref = [float(getattr(r.heights, name)) for r in refs]
            if isinstance(own, Missing):
                losses.append(own)
            elif not ref:
                losses.append(Missing("no-reference",
                                      "no undeformed, measurable neighbouring vertebra in view"))
            else:
                losses.append(1.0 - own / float(np.mean(ref)))
        present = [v for v in losses if not isinstance(v, Missing)]
        maximum: Measured = max(present) if present else losses[0]
        out[g.level] = HeightLoss(losses[0], losses[1], losses[2], maximum,
                                  tuple(r.level for r in refs),
                                  _ratio(h.anterior_mm, h.posterior_mm),
                                  _ratio(h.middle_mm, h.posterior_mm))
    return out
