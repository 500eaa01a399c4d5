"""Signed-distance primitives in patient space (mm), evaluated on blocks of an axial voxel grid.

Every primitive lives in its own rigid :class:`Frame` and returns an (approximate) signed
distance, negative inside, on the voxel centres of a block. A :class:`Solid` is a union of
primitives minus holes; it is evaluated only inside the bounding boxes of its parts.
"""

from __future__ import annotations

import abc
import itertools
import math
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

Vec = npt.NDArray[np.float64]
F32 = npt.NDArray[np.float32]
Block = tuple[slice, slice, slice]


def rotation(degrees: npt.ArrayLike) -> Vec:
    """Rotation matrix for angles about the x, then y, then z axis (degrees)."""
    ax, ay, az = (math.radians(float(a)) for a in np.asarray(degrees).ravel())
    rx = np.array([[1, 0, 0], [0, math.cos(ax), -math.sin(ax)], [0, math.sin(ax), math.cos(ax)]])
    ry = np.array([[math.cos(ay), 0, math.sin(ay)], [0, 1, 0], [-math.sin(ay), 0, math.cos(ay)]])
    rz = np.array([[math.cos(az), -math.sin(az), 0], [math.sin(az), math.cos(az), 0], [0, 0, 1]])
    return np.asarray(rz @ ry @ rx, dtype=np.float64)


@dataclass(frozen=True)
class Pose:
    """Rigid motion of the patient: rotation about ``pivot``, then ``translation`` (LPS mm)."""

    rotation: Vec
    pivot: Vec
    translation: Vec

    def apply(self, points: npt.ArrayLike) -> Vec:
        """Move anatomy points (..., 3) to patient coordinates."""
        p = np.asarray(points, dtype=np.float64)
        return np.asarray((p - self.pivot) @ self.rotation.T + self.pivot + self.translation)


IDENTITY = Pose(np.eye(3), np.zeros(3), np.zeros(3))


@dataclass(frozen=True)
class Frame:
    """A rigid frame: ``origin`` and ``axes`` (columns: local x, y, z in patient coordinates)."""

    origin: Vec
    axes: Vec

    def to_local(self, x: F32, y: F32, z: F32) -> tuple[F32, F32, F32]:
        """Local coordinates of patient points given as broadcastable x, y, z arrays."""
        dx = x - np.float32(self.origin[0])
        dy = y - np.float32(self.origin[1])
        dz = z - np.float32(self.origin[2])
        a = self.axes.astype(np.float32)
        lx, ly, lz = (dx * a[0, i] + dy * a[1, i] + dz * a[2, i] for i in range(3))
        return lx, ly, lz

    def to_world(self, local: npt.ArrayLike) -> Vec:
        """Patient coordinates of local points (..., 3)."""
        return np.asarray(np.asarray(local, dtype=np.float64) @ self.axes.T + self.origin)

    def posed(self, pose: Pose) -> Frame:
        return Frame(pose.apply(self.origin), pose.rotation @ self.axes)

    def at(self, local: npt.ArrayLike, axes: Vec | None = None) -> Frame:
        """A frame at a local point, with axes given in local coordinates (default: same axes)."""
        new_axes = self.axes if axes is None else self.axes @ axes
        return Frame(self.to_world(local), new_axes)


def axes_from(primary: npt.ArrayLike, hint: npt.ArrayLike, primary_index: int) -> Vec:
    """Orthonormal local axes (in the parent frame) with axis ``primary_index`` along ``primary``.

    ``hint`` fixes the rotation about the primary axis: the next axis (cyclically) is the
    component of ``hint`` perpendicular to ``primary``.
    """
    p = np.asarray(primary, dtype=np.float64)
    p = p / np.linalg.norm(p)
    h = np.asarray(hint, dtype=np.float64)
    h = h - (h @ p) * p
    h = h / np.linalg.norm(h)
    third = np.cross(p, h)
    axes = np.empty((3, 3))
    axes[:, primary_index] = p
    axes[:, (primary_index + 1) % 3] = h
    axes[:, (primary_index + 2) % 3] = third
    return axes


def upright_axes(direction: npt.ArrayLike) -> Vec:
    """Axes (in the parent frame) with x along ``direction`` and z as close to the parent z as
    possible: a box with these axes stands upright."""
    x = np.asarray(direction, dtype=np.float64)
    x = x / np.linalg.norm(x)
    z = np.array([0.0, 0.0, 1.0]) - x[2] * x
    z /= np.linalg.norm(z)
    return np.stack([x, np.cross(z, x), z], axis=1)


def ellipse_distance(x: F32, y: F32, a: float | F32, b: float | F32) -> F32:
    """Approximate signed distance to an ellipse with semi-axes ``a`` (x) and ``b`` (y)."""
    u = np.divide(x, a, dtype=np.float32)
    v = np.divide(y, b, dtype=np.float32)
    g = np.divide(u, a, dtype=np.float32)
    g *= g
    h = np.divide(v, b, dtype=np.float32)
    h *= h
    g += h
    np.sqrt(g, out=g)
    g += np.float32(1e-6)
    u *= u
    v *= v
    u += v
    np.sqrt(u, out=u)  # u is now the normalised radius f; the distance is (f - 1) f / g
    np.subtract(u, 1, out=v)
    v *= u
    v /= g
    return v


class Primitive(abc.ABC):
    """A shape in its own frame."""

    frame: Frame

    @abc.abstractmethod
    def local_bounds(self) -> tuple[Vec, Vec]:
        """Lower and upper corner of a local box containing the shape."""

    @abc.abstractmethod
    def local_distance(self, x: F32, y: F32, z: F32) -> F32:
        """Signed distance at local coordinates."""

    def distance(self, x: F32, y: F32, z: F32) -> F32:
        return self.local_distance(*self.frame.to_local(x, y, z))

    def bounds(self, margin: float) -> tuple[Vec, Vec]:
        """Axis-aligned patient-space box containing the shape grown by ``margin``."""
        lo, hi = self.local_bounds()
        corners = np.array(list(itertools.product(*zip(lo - margin, hi + margin, strict=True))))
        world = self.frame.to_world(corners)
        return world.min(axis=0), world.max(axis=0)


@dataclass(frozen=True)
class RoundBox(Primitive):
    """A box with half extents ``half`` and edges rounded with ``radius``, centred on the frame."""

    frame: Frame
    half: tuple[float, float, float]
    radius: float

    def local_bounds(self) -> tuple[Vec, Vec]:
        h = np.asarray(self.half)
        return -h, h

    def local_distance(self, x: F32, y: F32, z: F32) -> F32:
        r = np.float32(self.radius)
        qx = np.abs(x) - np.float32(self.half[0] - self.radius)
        qy = np.abs(y) - np.float32(self.half[1] - self.radius)
        qz = np.abs(z) - np.float32(self.half[2] - self.radius)
        outside = np.sqrt(np.maximum(qx, 0) ** 2 + np.maximum(qy, 0) ** 2
                          + np.maximum(qz, 0) ** 2)
        inside = np.minimum(np.maximum(np.maximum(qx, qy), qz), 0)
        return np.asarray(outside + inside - r, dtype=np.float32)


@dataclass(frozen=True)
class Capsule(Primitive):
    """A segment from the frame origin along local z of ``length``, thickened by ``radius``."""

    frame: Frame
    length: float
    radius: float

    def local_bounds(self) -> tuple[Vec, Vec]:
        r = self.radius
        return np.array([-r, -r, -r]), np.array([r, r, self.length + r])

    def local_distance(self, x: F32, y: F32, z: F32) -> F32:
        dz = z - np.clip(z, 0, np.float32(self.length))
        return np.asarray(np.sqrt(x * x + y * y + dz * dz) - np.float32(self.radius),
                          dtype=np.float32)


def capsule(start: Vec, end: Vec, radius: float) -> Capsule:
    """Capsule between two patient points."""
    direction = end - start
    length = float(np.linalg.norm(direction))
    hint = np.array([1.0, 0, 0]) if abs(direction[0]) < 0.9 * length else np.array([0, 1.0, 0])
    return Capsule(Frame(start, axes_from(direction, hint, 2)), length, radius)


@dataclass(frozen=True)
class EllipticSlab(Primitive):
    """An elliptic cylinder along local z between ``z0`` and ``z1`` (discs, spinal canal)."""

    frame: Frame
    a: float
    b: float
    z0: float
    z1: float

    def local_bounds(self) -> tuple[Vec, Vec]:
        return np.array([-self.a, -self.b, self.z0]), np.array([self.a, self.b, self.z1])

    def local_distance(self, x: F32, y: F32, z: F32) -> F32:
        mid, half = (self.z0 + self.z1) / 2, (self.z1 - self.z0) / 2
        dz = np.abs(z - np.float32(mid)) - np.float32(half)
        return np.asarray(np.maximum(ellipse_distance(x, y, self.a, self.b), dz), dtype=np.float32)


@dataclass(frozen=True)
class VertebralBody(Primitive):
    """An elliptic vertebral body: flat posterior wall, waist, concave endplates.

    ``loss`` is the fraction of height lost by compression: uniform for a crush fracture; for
    a wedge fracture full in the anterior fifth, none in the posterior fifth, linear between.
    """

    frame: Frame
    a: float  # half width (x)
    b: float  # half depth (y)
    height: float
    loss: float = 0.0
    wedge: bool = False
    waist: float = 0.07
    concavity: float = 0.07
    flat: float = 0.85

    def local_bounds(self) -> tuple[Vec, Vec]:
        h = self.height / 2
        return np.array([-self.a, -self.b, -h]), np.array([self.a, self.b, h])

    def height_factor(self, y: F32) -> F32:
        """Remaining height fraction as a function of local y (anterior -b .. posterior +b)."""
        if not self.wedge:
            return np.full_like(y, 1.0 - self.loss)
        t = np.clip((np.float32(0.6 * self.b) - y) / np.float32(1.2 * self.b), 0, 1)
        return np.asarray(1.0 - np.float32(self.loss) * t, dtype=np.float32)

    def local_distance(self, x: F32, y: F32, z: F32) -> F32:
        half = np.float32(self.height / 2) * self.height_factor(y)
        u = np.clip(z / half, -1, 1)
        shrink = 1 - np.float32(self.waist) * (1 - u * u)
        a, b = np.float32(self.a) * shrink, np.float32(self.b) * shrink
        cross = np.maximum(ellipse_distance(x, y, a, b), y - np.float32(self.flat * self.b))
        rho2 = np.minimum((x / np.float32(self.a)) ** 2 + (y / np.float32(self.b)) ** 2, 1)
        endplate = half * (1 - np.float32(self.concavity) * (1 - rho2))
        return np.asarray(np.maximum(cross, np.abs(z) - endplate), dtype=np.float32)


@dataclass(frozen=True)
class Blob(Primitive):
    """An ellipsoid with a smooth bumpy surface (a lesion).

    Each bump is a unit direction and a phase: the surface undulates with the direction of
    the point seen from the centre, by up to ``amplitude`` (a fraction of the radius).
    """

    frame: Frame
    radii: tuple[float, float, float]
    bumps: tuple[tuple[float, float, float, float], ...]  # unit direction (3), phase
    amplitude: float

    def local_bounds(self) -> tuple[Vec, Vec]:
        r = np.asarray(self.radii) * (1 + self.amplitude)
        return -r, r

    def local_distance(self, x: F32, y: F32, z: F32) -> F32:
        rx, ry, rz = (np.float32(r) for r in self.radii)
        u, v, w = x / rx, y / ry, z / rz
        norm = np.sqrt(u * u + v * v + w * w) + np.float32(1e-6)
        wobble = np.zeros_like(norm)
        for dx, dy, dz, phase in self.bumps:
            wobble += np.sin(np.float32(2.5) * (u * dx + v * dy + w * dz) / norm + phase)
        scale = np.float32(self.amplitude / max(len(self.bumps), 1))
        mean_radius = np.float32(float(np.mean(self.radii)))
        return np.asarray((norm - 1 - scale * wobble) * mean_radius, dtype=np.float32)


@dataclass(frozen=True)
class Solid:
    """Union of ``parts`` minus the union of ``holes``."""

    parts: tuple[Primitive, ...]
    holes: tuple[Primitive, ...] = ()

    def posed(self, pose: Pose) -> Solid:
        return Solid(tuple(_posed(p, pose) for p in self.parts),
                     tuple(_posed(p, pose) for p in self.holes))

    def bounds(self, margin: float) -> tuple[Vec, Vec]:
        boxes = [p.bounds(margin) for p in self.parts]
        return (np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0))


def _posed(p: Primitive, pose: Pose) -> Primitive:
    moved: Primitive = replace(p, frame=p.frame.posed(pose))  # type: ignore[type-var]
    return moved


@dataclass(frozen=True)
class Grid:
    """An axial voxel grid: ``origin`` is the first voxel centre, arrays are [z, y, x]."""

    origin: Vec
    spacing: Vec  # x, y, z
    shape: tuple[int, int, int]  # slices, rows, columns

    def block(self, lo: Vec, hi: Vec) -> Block | None:
        """Index block of voxels whose centres may lie in the box, or None if empty."""
        size = np.array(self.shape[::-1])
        start = np.maximum(np.floor((lo - self.origin) / self.spacing), 0).astype(int)
        stop = np.minimum(np.ceil((hi - self.origin) / self.spacing) + 1, size).astype(int)
        if np.any(stop <= start):
            return None
        return (slice(start[2], stop[2]), slice(start[1], stop[1]), slice(start[0], stop[0]))

    def coordinates(self, block: Block) -> tuple[F32, F32, F32]:
        """Broadcastable x (1,1,n), y (1,n,1), z (n,1,1) voxel-centre coordinates of a block."""
        axes = []
        for axis, sl in zip((0, 1, 2), (block[2], block[1], block[0]), strict=True):
            idx = np.arange(sl.start, sl.stop, dtype=np.float32)
            axes.append(np.float32(self.origin[axis]) + idx * np.float32(self.spacing[axis]))
        return axes[0][None, None, :], axes[1][None, :, None], axes[2][:, None, None]


def _intersect(outer: Block, inner: Block) -> tuple[Block, Block] | None:
    """Intersection of two blocks: (block in grid, same block relative to ``outer``)."""
    grid_slices, rel_slices = [], []
    for o, i in zip(outer, inner, strict=True):
        start, stop = max(o.start, i.start), min(o.stop, i.stop)
        if stop <= start:
            return None
        grid_slices.append(slice(start, stop))
        rel_slices.append(slice(start - o.start, stop - o.start))
    return ((grid_slices[0], grid_slices[1], grid_slices[2]),
            (rel_slices[0], rel_slices[1], rel_slices[2]))


def evaluate(solid: Solid, grid: Grid, margin: float,
             within: Block | None = None) -> tuple[Block, F32] | None:
    """Signed distance of ``solid`` (+inf far from its parts) on the smallest block holding
    its parts, or on ``within`` if given."""
    outer = grid.block(*solid.bounds(margin)) if within is None else within
    if outer is None:
        return None
    shape = tuple(s.stop - s.start for s in outer)
    d = np.full(shape, np.inf, dtype=np.float32)
    for primitives, is_hole in ((solid.parts, False), (solid.holes, True)):
        for p in primitives:
            inner = grid.block(*p.bounds(margin))
            both = _intersect(outer, inner) if inner is not None else None
            if both is None:
                continue
            sub, rel = both
            value = p.distance(*grid.coordinates(sub))
            view = d[rel]
            if is_hole:
                np.maximum(view, -value, out=view)
            else:
                np.minimum(view, value, out=view)
    return outer, d
