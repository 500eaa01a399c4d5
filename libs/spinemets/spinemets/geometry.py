"""DICOM geometry: assembling CT slices into a regular HU volume, with explicit checks.

A series becomes a :class:`Volume` only if its slices form a regular grid: same orientation,
no gantry tilt, no duplicate positions, even spacing along the slice normal. Anything else is a
:class:`~spinemets.errors.GeometryError` with a reason, never a silently wrong geometry.

Coordinates are DICOM patient coordinates (LPS, mm). Arrays are indexed ``[slice, row, column]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset

from spinemets.errors import GeometryError, InputError

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"

#: Tolerances: direction cosines, relative spacing deviation, absolute position (mm).
ORIENTATION_TOLERANCE = 1e-3
SPACING_TOLERANCE = 0.01
POSITION_TOLERANCE_MM = 0.01


@dataclass(frozen=True)
class Geometry:
    """A regular voxel grid in patient space.

    ``direction`` has the row direction, the column direction and the slice normal as its
    columns; ``spacing`` is (column, row, slice) spacing; ``origin`` is the first voxel's centre.
    """

    size: tuple[int, int, int]  # columns, rows, slices
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: npt.NDArray[np.float64] = field(compare=False)

    def index_to_patient(self, ijk: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Patient coordinates (LPS mm) of voxel indices (column, row, slice), shape (..., 3)."""
        scaled = np.asarray(ijk, dtype=np.float64) * np.asarray(self.spacing)
        patient: npt.NDArray[np.float64] = np.asarray(self.origin) + scaled @ self.direction.T
        return patient

    def slice_positions(self) -> npt.NDArray[np.float64]:
        """Image Position (Patient) of each slice, shape (slices, 3)."""
        k = np.arange(self.size[2], dtype=np.float64)
        ijk = np.stack([np.zeros_like(k), np.zeros_like(k), k], axis=1)
        return self.index_to_patient(ijk)

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing))


@dataclass(frozen=True)
class Volume:
    """A CT volume in HU with its geometry and the source instance of each slice."""

    array: npt.NDArray[np.int16]  # [slice, row, column]
    geometry: Geometry
    slice_instance_uids: tuple[str, ...]
    sop_class_uid: str


def _orientation(ds: Dataset) -> npt.NDArray[np.float64]:
    try:
        iop = np.asarray([float(v) for v in ds.ImageOrientationPatient], dtype=np.float64)
    except (AttributeError, TypeError, ValueError):
        raise GeometryError("Image Orientation (Patient) missing or invalid",
                            reason="missing-geometry") from None
    if iop.shape != (6,):
        raise GeometryError("Image Orientation (Patient) must have 6 values",
                            reason="missing-geometry")
    return iop


def _position(ds: Dataset) -> npt.NDArray[np.float64]:
    try:
        ipp = np.asarray([float(v) for v in ds.ImagePositionPatient], dtype=np.float64)
    except (AttributeError, TypeError, ValueError):
        raise GeometryError("Image Position (Patient) missing or invalid",
                            reason="missing-geometry") from None
    if ipp.shape != (3,):
        raise GeometryError("Image Position (Patient) must have 3 values",
                            reason="missing-geometry")
    return ipp


def _stored(ds: Dataset) -> npt.NDArray[np.float64]:
    """The decoded stored values (not yet rescaled)."""
    if "PixelData" not in ds:
        raise InputError(f"instance {ds.SOPInstanceUID} has no pixel data",
                         reason="missing-pixel-data")
    try:
        return np.asarray(ds.pixel_array, dtype=np.float64)
    except Exception as exc:  # pydicom raises many types for undecodable data
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "unknown")
        raise InputError(f"pixel data of {ds.SOPInstanceUID} cannot be decoded "
                         f"(transfer syntax {syntax}): {exc}",
                         reason="undecodable-pixel-data") from None


def _rescale(item: Dataset) -> tuple[float, float]:
    """Rescale slope and intercept of a dataset or a Pixel Value Transformation item."""
    slope = float(item.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(item.get("RescaleIntercept", 0.0) or 0.0)
    return slope, intercept


def _hu(ds: Dataset) -> npt.NDArray[np.float64]:
    slope, intercept = _rescale(ds)
    return _stored(ds) * slope + intercept


def order_slices(slices: Sequence[Dataset]) -> tuple[list[int], Geometry]:
    """Check that slices form a regular grid; return their order along the normal and the grid.

    Raises :class:`GeometryError` for mixed orientations or matrix sizes, gantry tilt,
    duplicate positions and uneven spacing (missing or extra slices).
    """
    iop = _orientation(slices[0])
    for ds in slices[1:]:
        if not np.allclose(_orientation(ds), iop, atol=ORIENTATION_TOLERANCE):
            raise GeometryError("slices have different orientations", reason="mixed-orientation")
    row, col = iop[:3], iop[3:]
    normal = np.cross(row, col)
    shapes = {(int(ds.Rows), int(ds.Columns)) for ds in slices}
    if len(shapes) != 1:
        raise GeometryError(f"slices have different matrix sizes {sorted(shapes)}",
                            reason="mixed-matrix")
    tilt = slices[0].get("GantryDetectorTilt")
    if tilt is not None and abs(float(tilt)) > 1e-3:
        raise GeometryError(f"gantry tilt of {float(tilt):.2f} degrees is not supported",
                            reason="gantry-tilt")
    positions = np.stack([_position(ds) for ds in slices])
    distances = positions @ normal
    order = [int(i) for i in np.argsort(distances, kind="stable")]
    positions, distances = positions[order], distances[order]
    if len(order) > 1:
        steps = np.diff(distances)
        if np.any(steps < POSITION_TOLERANCE_MM):
            raise GeometryError("two or more slices share a position", reason="duplicate-position")
        spacing_z = float(np.median(steps))
        offsets = positions[1:] - positions[:-1]
        in_plane = offsets - np.outer(offsets @ normal, normal)
        if np.any(np.linalg.norm(in_plane, axis=1) > max(POSITION_TOLERANCE_MM, 0.01 * spacing_z)):
            raise GeometryError("slice positions are not along the slice normal (gantry tilt "
                                "or sheared acquisition)", reason="gantry-tilt")
        if np.any(np.abs(steps - spacing_z) > SPACING_TOLERANCE * spacing_z + 1e-3):
            raise GeometryError(f"uneven slice spacing (steps from {steps.min():.3f} to "
                                f"{steps.max():.3f} mm: missing or extra slices)",
                                reason="uneven-spacing")
    else:
        spacing_z = float(slices[0].get("SliceThickness") or 1.0)
    rows, cols = shapes.pop()
    try:
        pixel_spacing = [float(v) for v in slices[0].PixelSpacing]
    except (AttributeError, TypeError, ValueError):
        raise GeometryError("Pixel Spacing missing or invalid", reason="missing-geometry") from None
    geometry = Geometry(
        size=(cols, rows, len(order)),
        spacing=(pixel_spacing[1], pixel_spacing[0], spacing_z),
        origin=(float(positions[0][0]), float(positions[0][1]), float(positions[0][2])),
        direction=np.stack([row, col, normal], axis=1),
    )
    return order, geometry


def _to_int16(hu: npt.NDArray[np.float64]) -> npt.NDArray[np.int16]:
    return np.clip(np.rint(hu), -32768, 32767).astype(np.int16)


def assemble_ct(datasets: Sequence[Dataset]) -> Volume:
    """Assemble CT instances into a HU volume sorted along the slice normal.

    Accepts single-frame CT Image Storage slices or one Enhanced CT instance. Raises
    :class:`GeometryError` (see :func:`order_slices`) and :class:`InputError` for non-CT
    objects and pixel data that is missing or cannot be decoded.
    """
    if not datasets:
        raise InputError("series has no instances", reason="empty-series")
    for ds in datasets:
        if ds.get("Modality") != "CT":
            raise InputError(f"instance has modality {ds.get('Modality')!r}, not CT",
                             reason="not-ct")
    if any(ds.SOPClassUID == ENHANCED_CT_IMAGE_STORAGE for ds in datasets):
        if len(datasets) != 1:
            raise InputError("enhanced CT series with more than one instance is not supported",
                             reason="unsupported-multiframe")
        return assemble_enhanced_ct(datasets[0])
    order, geometry = order_slices(datasets)
    ordered = [datasets[i] for i in order]
    array = np.stack([_to_int16(_hu(ds)) for ds in ordered])
    return Volume(array, geometry, tuple(str(ds.SOPInstanceUID) for ds in ordered),
                  str(ordered[0].SOPClassUID))


def assemble_enhanced_ct(ds: Dataset) -> Volume:
    """Assemble a multi-frame Enhanced CT instance from its per-frame plane positions."""
    shared = (ds.get("SharedFunctionalGroupsSequence") or [Dataset()])[0]
    frames = ds.get("PerFrameFunctionalGroupsSequence")
    if not frames:
        raise GeometryError("enhanced CT without per-frame functional groups",
                            reason="missing-geometry")

    def item(frame: Dataset, name: str, n: int) -> Dataset:
        seq = frame.get(name) or shared.get(name)
        if not seq:
            raise GeometryError(f"frame {n + 1} lacks {name}", reason="missing-geometry")
        first: Dataset = seq[0]
        return first

    planes: list[Dataset] = []
    rescales: list[tuple[float, float]] = []
    for n, frame in enumerate(frames):
        transform = frame.get("PixelValueTransformationSequence") or shared.get(
            "PixelValueTransformationSequence")
        rescales.append(_rescale(transform[0] if transform else ds))
        plane = Dataset()
        plane.ImageOrientationPatient = item(frame, "PlaneOrientationSequence",
                                             n).ImageOrientationPatient
        plane.ImagePositionPatient = item(frame, "PlanePositionSequence", n).ImagePositionPatient
        plane.PixelSpacing = item(frame, "PixelMeasuresSequence", n).PixelSpacing
        plane.Rows, plane.Columns = ds.Rows, ds.Columns
        planes.append(plane)
    order, geometry = order_slices(planes)
    stored = _stored(ds)
    if stored.ndim == 2:
        stored = stored[None]
    slopes, intercepts = (np.asarray(v)[:, None, None] for v in zip(*rescales, strict=True))
    hu = stored * slopes + intercepts
    uids = tuple(f"{ds.SOPInstanceUID}#{i + 1}" for i in order)
    return Volume(_to_int16(hu[order]), geometry, uids, ENHANCED_CT_IMAGE_STORAGE)
