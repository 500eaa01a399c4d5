"""Rigid motions as 4x4 homogeneous matrices (``x' = M[:3, :3] @ x + M[:3, 3]``, mm)."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from phantom.shapes import Frame, Pose, Vec


def matrix(rotation: npt.ArrayLike, translation: npt.ArrayLike) -> Vec:
    m = np.eye(4)
    m[:3, :3] = rotation
    m[:3, 3] = translation
    return m


def of_pose(pose: Pose) -> Vec:
    """The matrix of a pose (rotation about its pivot, then its translation)."""
    return matrix(pose.rotation, pose.pivot + pose.translation - pose.rotation @ pose.pivot)


def of_frame(frame: Frame) -> Vec:
    """The matrix taking local coordinates of ``frame`` to its parent's."""
    return matrix(frame.axes, frame.origin)


def to_pose(m: Vec, pivot: Vec) -> Pose:
    """The pose with ``pivot`` whose matrix is ``m``."""
    rotation = m[:3, :3]
    return Pose(rotation.copy(), pivot, rotation @ pivot + m[:3, 3] - pivot)


def apply(m: Vec, points: npt.ArrayLike) -> Vec:
    """Move points (..., 3)."""
    return np.asarray(np.asarray(points, dtype=np.float64) @ m[:3, :3].T + m[:3, 3])


def about_axis(axis: npt.ArrayLike, degrees: float) -> Vec:
    """Rotation matrix of ``degrees`` about ``axis`` (Rodrigues)."""
    k = np.asarray(axis, dtype=np.float64)
    k = k / np.linalg.norm(k)
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    angle = math.radians(degrees)
    return np.asarray(np.eye(3) + math.sin(angle) * cross
                      + (1 - math.cos(angle)) * cross @ cross)


def euler_deg(rotation: Vec) -> tuple[float, float, float]:
    """Angles about x, then y, then z (degrees) of :func:`phantom.shapes.rotation`'s order."""
    y = math.asin(float(np.clip(-rotation[2, 0], -1, 1)))
    x = math.atan2(rotation[2, 1], rotation[2, 2])
    z = math.atan2(rotation[1, 0], rotation[0, 0])
    return math.degrees(x), math.degrees(y), math.degrees(z)


def best_fit(source: Vec, target: Vec) -> Vec:
    """The rigid motion taking ``source`` points (n, 3) closest to ``target`` (Kabsch)."""
    ps, pt = source.mean(axis=0), target.mean(axis=0)
    u, _, vt = np.linalg.svd((source - ps).T @ (target - pt))
    d = np.sign(np.linalg.det(vt.T @ u.T))
    rotation = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return matrix(rotation, pt - rotation @ ps)
