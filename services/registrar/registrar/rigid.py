"""Rigid transforms as 4x4 matrices in patient space (``x' = M[:3, :3] @ x + M[:3, 3]``, mm),
and their initialisation from the masks of one structure in two studies."""

from __future__ import annotations

import itertools
import math

import numpy as np
import numpy.typing as npt

Affine = npt.NDArray[np.float64]
Points = npt.NDArray[np.float64]


def matrix(rotation: npt.ArrayLike, translation: npt.ArrayLike) -> Affine:
    m = np.eye(4)
    m[:3, :3] = rotation
    m[:3, 3] = translation
    return m


def apply(m: Affine, points: npt.ArrayLike) -> Points:
    """Move points (..., 3)."""
    return np.asarray(np.asarray(points, dtype=np.float64) @ m[:3, :3].T + m[:3, 3])


def inverse(m: Affine) -> Affine:
    """The inverse of a rigid motion."""
    rotation = m[:3, :3].T
    return matrix(rotation, -rotation @ m[:3, 3])


def rotation_deg(m: Affine) -> float:
    """Angle of the rotation of ``m``, degrees."""
    cosine = (float(np.trace(m[:3, :3])) - 1) / 2
    return math.degrees(math.acos(min(1.0, max(-1.0, cosine))))


def principal_axes(points: Points) -> tuple[Points, Points]:
    """Centroid and principal axes (columns, largest variance first) of a point cloud."""
    centroid = points.mean(axis=0)
    _, vectors = np.linalg.eigh(np.cov((points - centroid).T))
    return centroid, vectors[:, ::-1]


def candidates(prior: Points, current: Points) -> list[tuple[str, Affine]]:
    """Rigid transforms taking the ``prior`` points' centroid onto the ``current`` ones'.

    First the one without rotation, then the four that map each principal axis onto the
    corresponding one, with every choice of their signs that is a proper rotation (the signs
    of principal axes are arbitrary: the caller picks the candidate that fits best).
    """
    c_prior, axes_prior = principal_axes(prior)
    c_current, axes_current = principal_axes(current)
    out = [("centroids", matrix(np.eye(3), c_current - c_prior))]
    for signs in itertools.product((1.0, -1.0), repeat=3):
        rotation = axes_current @ np.diag(signs) @ axes_prior.T
        if np.linalg.det(rotation) > 0:
            out.append(("principal axes", matrix(rotation, c_current - rotation @ c_prior)))
    return out


def orthonormal(m: Affine) -> Affine:
    """``m`` with its linear part replaced by the nearest rotation."""
    u, _, vt = np.linalg.svd(m[:3, :3])
    rotation = u @ np.diag([1.0, 1.0, float(np.sign(np.linalg.det(u @ vt)))]) @ vt
    return matrix(rotation, m[:3, 3])
