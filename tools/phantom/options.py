"""Options of a phantom: every unset option is drawn deterministically from the seed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from phantom.anatomy import UNITS
from spinemets import labels

LesionKind = Literal["lytic", "blastic", "mixed"]
LESION_KINDS: tuple[LesionKind, ...] = ("lytic", "blastic", "mixed")
SLICE_THICKNESSES = (1.0, 1.25, 2.0, 2.5, 3.0)


@dataclass(frozen=True)
class PhantomOptions:
    """What to generate. ``None`` means "random, from the seed".

    Grid: ``spacing`` is (column, row, slice) in mm; ``size`` is (columns, rows, slices) and
    wins over ``matrix`` (square in-plane matrix); ``centre`` is the grid centre (LPS mm).
    Field of view: ``levels`` (first, last unit: "T1".."L5" or "sacrum") or ``full_spine``;
    otherwise a random run of at least six units. Pose: rotations up to ``max_rotation_deg``
    about each axis and shifts up to ``max_translation_mm``; zero both for a canonical pose.
    """

    seed: int = 0
    full_spine: bool = False
    levels: tuple[str, str] | None = None
    spacing: tuple[float, float, float] | None = None
    matrix: int | None = None
    size: tuple[int, int, int] | None = None
    centre: tuple[float, float, float] | None = None
    max_rotation_deg: float = 8.0
    max_translation_mm: float = 20.0
    lesions: int = 0
    lesion_kinds: tuple[LesionKind, ...] = LESION_KINDS
    posterior_lesions: bool = False
    compression: str | None = None  # a level "T1".."L5", or "random"
    compression_fraction: float | None = None
    compression_wedge: bool | None = None
    noise_sigma: float | None = None  # HU
    psf_sigma_mm: float | None = None

    def __post_init__(self) -> None:
        if self.levels is not None:
            for unit in self.levels:
                if unit not in UNITS:
                    raise ValueError(f"levels: {unit!r} is not one of {', '.join(UNITS)}")
            if UNITS.index(self.levels[0]) > UNITS.index(self.levels[1]):
                raise ValueError("levels: the first unit must be cranial to the last")
        if self.spacing is not None and (len(self.spacing) != 3
                                         or not all(0.1 <= v <= 10 for v in self.spacing)):
            raise ValueError("spacing: three values between 0.1 and 10 mm are required")
        if self.matrix is not None and not 16 <= self.matrix <= 1024:
            raise ValueError("matrix: must be between 16 and 1024")
        if self.size is not None and (len(self.size) != 3
                                      or not all(1 <= v <= 2048 for v in self.size)):
            raise ValueError("size: three values between 1 and 2048 are required")
        if not 0 <= self.max_rotation_deg <= 30:
            raise ValueError("max_rotation_deg: must be between 0 and 30")
        if not 0 <= self.max_translation_mm <= 100:
            raise ValueError("max_translation_mm: must be between 0 and 100")
        if not 0 <= self.lesions <= len(labels.LEVELS):
            raise ValueError(f"lesions: must be between 0 and {len(labels.LEVELS)}")
        if not self.lesion_kinds or any(k not in LESION_KINDS for k in self.lesion_kinds):
            raise ValueError(f"lesion_kinds: choose among {', '.join(LESION_KINDS)}")
        if self.compression not in (None, "random", *labels.LEVELS):
            raise ValueError("compression: a level T1..L5 or 'random'")
        if self.compression_fraction is not None and not 0 < self.compression_fraction < 0.8:
            raise ValueError("compression_fraction: must be in (0, 0.8)")
        if self.noise_sigma is not None and not 0 <= self.noise_sigma <= 200:
            raise ValueError("noise_sigma: must be between 0 and 200 HU")
        if self.psf_sigma_mm is not None and not 0 <= self.psf_sigma_mm <= 5:
            raise ValueError("psf_sigma_mm: must be between 0 and 5 mm")


@dataclass(frozen=True)
class FollowUpOptions:
    """How a follow-up differs from its baseline; ``seed`` draws everything left random.

    Pose: a rotation of ``max_rotation_deg`` / 2 to ``max_rotation_deg`` about a random axis
    through the scanned spine and a shift of ``max_translation_mm`` / 2 to
    ``max_translation_mm``. Curvature: kyphosis and lordosis scaled by up to +-``max_bend``,
    lateral sway changed by up to +-``max_sway_mm``. Lesions: ``resolved`` of the baseline's
    disappear, the others grow or shrink, ``new_lesions`` appear; ``compression`` adds a
    fracture at a level ("T1".."L5", or "random": one in view) not yet fractured.
    """

    seed: int = 0
    max_rotation_deg: float = 10.0
    max_translation_mm: float = 20.0
    max_bend: float = 0.15
    max_sway_mm: float = 2.0
    resolved: int = 1
    new_lesions: int = 1
    compression: str | None = None
    compression_fraction: float | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.max_rotation_deg <= 30:
            raise ValueError("max_rotation_deg: must be between 0 and 30")
        if not 0 <= self.max_translation_mm <= 100:
            raise ValueError("max_translation_mm: must be between 0 and 100")
        if not 0 <= self.max_bend <= 0.5:
            raise ValueError("max_bend: must be between 0 and 0.5")
        if not 0 <= self.max_sway_mm <= 10:
            raise ValueError("max_sway_mm: must be between 0 and 10 mm")
        if not 0 <= self.resolved <= len(labels.LEVELS):
            raise ValueError(f"resolved: must be between 0 and {len(labels.LEVELS)}")
        if not 0 <= self.new_lesions <= len(labels.LEVELS):
            raise ValueError(f"new_lesions: must be between 0 and {len(labels.LEVELS)}")
        if self.compression not in (None, "random", *labels.LEVELS):
            raise ValueError("compression: a level T1..L5 or 'random'")
        if self.compression_fraction is not None and not 0 < self.compression_fraction < 0.8:
            raise ValueError("compression_fraction: must be in (0, 0.8)")
