"""Method settings of the risk service: calibration, measurement, strength, loads, risk, SINS.

Every number that ``SCIENCE.md`` marks as a design decision [D] is a setting here with the
documented default; ``docs/risk-methods.md`` explains each one and where it comes from. They
live in ``risk.methods`` of ``config/spinemets.yaml``.
"""

from __future__ import annotations

import enum

from pydantic import Field, model_validator

from spinemets.config import Section


class Material(enum.StrEnum):
    """Reference material of a density calibration (SCIENCE.md 2: not interchangeable)."""

    K2HPO4 = "K2HPO4"
    HA = "HA"  # calcium hydroxyapatite


class CalibrationMethod(enum.StrEnum):
    """How HU become density. ``auto``: phantom if one matches the scanner, else internal,
    else uncalibrated."""

    AUTO = "auto"
    PHANTOM = "phantom"
    INTERNAL = "internal"
    UNCALIBRATED = "uncalibrated"


class LinearCalibration(Section):
    """``HU = intercept_hu + slope_hu_per_mg_cm3 * rho`` with rho in mg/cm3 of ``material``."""

    material: Material = Material.K2HPO4
    slope_hu_per_mg_cm3: float = Field(default=1.2, gt=0)
    intercept_hu: float = 0.0


class PhantomCalibration(LinearCalibration):
    """Coefficients of one scanner and tube voltage, from a phantom scan at the site.

    A series matches when Manufacturer (0008,0070) and KVP (0018,0060) agree and, where set,
    Manufacturer's Model Name (0008,1090) and Convolution Kernel (0018,1210) too (text is
    compared case-insensitively).
    """

    manufacturer: str = Field(min_length=1)
    model: str | None = None
    kvp: float = Field(gt=0)
    kernel: str | None = None
    #: Where the coefficients come from (phantom, serial number, date): recorded with results.
    source: str = ""


class InternalCalibrationSettings(Section):
    """Phantomless calibration from the patient's own air, fat and muscle (SCIENCE.md 2).

    Each reference tissue has an *equivalent density* (mg/cm3 of ``material``): the density a
    phantom calibration assigns to it (Lee et al., Bone 2017). The defaults [D] are the
    SCIENCE.md typical HU (air -1000, fat -100, muscle +50) under the nominal 120 kVp K2HPO4
    calibration (1.2 HU per mg/cm3): replace them with values from the site's own
    phantom-calibrated scans.
    """

    material: Material = Material.K2HPO4
    air_mg_cm3: float = -833.3
    fat_mg_cm3: float = -83.3
    muscle_mg_cm3: float = 41.7
    #: HU windows that select each tissue before erosion (fat: adipose window of body
    #: composition CT; muscle: lean tissue window, both [D]).
    air_window_hu: tuple[float, float] = (-1100.0, -900.0)
    fat_window_hu: tuple[float, float] = (-190.0, -30.0)
    muscle_window_hu: tuple[float, float] = (-29.0, 150.0)
    #: Regions are eroded by this depth to avoid partial volume at their borders.
    erosion_mm: float = Field(default=2.0, ge=0, le=10)
    #: Fewest voxels a region needs to be used.
    min_voxels: int = Field(default=200, ge=10)


class CalibrationSettings(Section):
    method: CalibrationMethod = CalibrationMethod.AUTO
    phantoms: tuple[PhantomCalibration, ...] = ()
    internal: InternalCalibrationSettings = InternalCalibrationSettings()
    #: Used when nothing else is available; results say "uncalibrated" [D].
    nominal: LinearCalibration = LinearCalibration()


class MeasurementSettings(Section):
    """Geometry of the per-vertebra and muscle measurements (all [D])."""

    #: Trabecular region: body voxels deeper than this below the body surface (cortex peel).
    cortical_margin_mm: float = Field(default=3.0, ge=0.5, le=10)
    #: Anterior / posterior heights are taken this fraction of the body depth inside its edges.
    height_inset_fraction: float = Field(default=0.1, ge=0, le=0.3)
    #: Spacing of the 3 x 3 bundle of lines whose median is a height.
    height_bundle_mm: float = Field(default=1.0, gt=0, le=3)
    #: Step of the lines sampled for heights and depths.
    line_step_mm: float = Field(default=0.25, gt=0, le=1)
    #: Lean tissue window of muscle cross-sectional area (Mitsiopoulos et al., J Appl Physiol
    #: 1998: -29..150 HU).
    lean_window_hu: tuple[float, float] = (-29.0, 150.0)
    #: Sampling of the plane perpendicular to the spine axis (muscles) and its half size.
    plane_step_mm: float = Field(default=0.5, gt=0, le=2)
    plane_half_size_mm: float = Field(default=160.0, gt=20, le=400)
    #: Sampling of the cross-sections of the body (rigidity).
    section_step_mm: float = Field(default=0.5, gt=0, le=2)
    #: Cross-sections with less area than this fraction of the largest (near the endplates)
    #: are left out of the rigidity minimum.
    min_section_area_fraction: float = Field(default=0.8, gt=0, le=1)


class ModulusLaw(enum.StrEnum):
    """Density -> elastic modulus relations of SCIENCE.md 3 (E in MPa, rho in g/cm3)."""

    MORGAN_2003 = "morgan2003"  # E = 4730 rho_app^1.56, vertebral trabecular bone
    KOPPERDAHL_2002 = "kopperdahl2002"  # E = 2980 rho_app^1.05
    CRAWFORD_2003 = "crawford2003"  # E = -34.7 + 3230 rho_QCT (K2HPO4)


class DensityAreaLaw(enum.StrEnum):
    """Failure stress of the density x area estimate."""

    #: ``yield_strain * E(rho)`` with the configured modulus law (bone fails at a constant
    #: strain, as in the rigidity analysis).
    YIELD_STRAIN = "yield_strain"
    #: ``37.4 * rho_app^1.39`` (Kopperdahl 2002 as cited in SCIENCE.md), through the density
    #: conversions below.
    KOPPERDAHL_2002 = "kopperdahl2002"


class LinearMap(Section):
    """``y = intercept + slope * x`` (densities in g/cm3)."""

    intercept: float
    slope: float = Field(gt=0)


class StrengthSettings(Section):
    modulus_law: ModulusLaw = ModulusLaw.CRAWFORD_2003
    #: Bone fails at a roughly constant strain: F = yield_strain * min EA [D].
    yield_strain: float = Field(default=0.008, gt=0, lt=0.05)
    density_area_law: DensityAreaLaw = DensityAreaLaw.YIELD_STRAIN
    #: rho_ash from rho_K2HPO4 (Keyak et al., Clin Orthop 2005; check against the paper).
    k2hpo4_to_ash: LinearMap = LinearMap(intercept=0.0523, slope=1.22)
    #: rho_ash from rho_HA (Schileo et al., J Biomech 2008; check against the paper).
    ha_to_ash: LinearMap = LinearMap(intercept=0.079, slope=0.877)
    #: rho_ash / rho_app of bone (Schileo 2008; Morgan 2003 uses the same ratio).
    ash_fraction: float = Field(default=0.6, gt=0, le=1)
    #: Lower confidence for vertebrae holding these lesion types (SCIENCE.md 3).
    low_confidence_lesions: tuple[str, ...] = ("blastic", "mixed")


class Sex(enum.StrEnum):
    MALE = "male"
    FEMALE = "female"


class Activity(Section):
    """A static task of the sagittal model: trunk flexion and a load held in both hands."""

    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")
    trunk_flexion_deg: float = Field(default=0.0, ge=0, le=90)
    hand_load_kg: float = Field(default=0.0, ge=0, le=100)
    #: Horizontal distance of the hands in front of the shoulders (0.30: elbows at 90 degrees).
    hands_anterior_m: float = Field(default=0.0, ge=0, le=1)


DEFAULT_ACTIVITIES = (
    Activity(name="standing"),
    Activity(name="standing_5kg", hand_load_kg=5.0, hands_anterior_m=0.30),
    Activity(name="flexion_30_5kg", trunk_flexion_deg=30.0, hand_load_kg=5.0,
             hands_anterior_m=0.30),
)


class LoadSettings(Section):
    """Static sagittal equilibrium model (SCIENCE.md 4) and its population parameters [D]."""

    activities: tuple[Activity, ...] = Field(default=DEFAULT_ACTIVITIES, min_length=1)
    #: Used when the header lacks PatientWeight / PatientSize / PatientSex.
    default_body_mass_kg: float = Field(default=70.0, ge=20, le=300)
    default_body_height_m: float = Field(default=1.75, ge=1.0, le=2.5)
    default_sex: Sex = Sex.MALE
    #: Spine length from the top of T1 to the bottom of L5, as a fraction of stature.
    spine_length_fraction: float = Field(default=0.28, gt=0.1, lt=0.5)
    #: Head and neck centre of mass above the top of T1, as a fraction of stature.
    head_above_t1_fraction: float = Field(default=0.10, ge=0, lt=0.3)
    #: Shoulders (where arms and hand loads hang) below the top of T1, fraction of stature.
    shoulder_below_t1_fraction: float = Field(default=0.03, ge=0, lt=0.2)
    #: In upright standing: centre of mass of each trunk slice, of the head and of the arms in
    #: front of the vertebral body centroid line.
    trunk_anterior_m: float = Field(default=0.04, ge=-0.1, le=0.2)
    head_anterior_m: float = Field(default=0.02, ge=-0.1, le=0.2)
    arms_anterior_m: float = Field(default=0.0, ge=-0.1, le=0.2)
    #: Share of de Leva's lower trunk (omphalion to hip centres) above the bottom of L5.
    lower_trunk_above_l5: float = Field(default=0.5, ge=0, le=1)
    #: Maximal muscle stress for the extensors' force capacity (Burkhart et al. 2018), N/cm2.
    muscle_max_stress_n_cm2: float = Field(default=100.0, gt=0, le=300)
    #: Extensor moment arm (m) when the CT has no back-muscle segmentation: thoracic, lumbar.
    #: None (default): loads are reported missing rather than computed with a population value.
    fallback_moment_arm_m: tuple[float, float] | None = None


class RiskCategory(Section):
    """A named band of the factor of risk: Phi >= ``min_phi`` (up to the next band)."""

    name: str = Field(min_length=1, max_length=64)
    min_phi: float = Field(ge=0)


class StrengthMethod(enum.StrEnum):
    CTRA = "ctra"
    DENSITY_AREA = "density_area"


class FactorOfRiskSettings(Section):
    #: Which strength estimate divides the load.
    strength: StrengthMethod = StrengthMethod.CTRA
    #: No validated cut-off exists for metastatic spines (SCIENCE.md 5); the default only
    #: separates Phi < 1 from Phi >= 1 (failure expected, Hayes).
    categories: tuple[RiskCategory, ...] = (
        RiskCategory(name="below 1", min_phi=0.0),
        RiskCategory(name="1 or more: failure expected", min_phi=1.0),
    )

    @model_validator(mode="after")
    def _ordered(self) -> FactorOfRiskSettings:
        bounds = [c.min_phi for c in self.categories]
        if bounds != sorted(bounds) or len(set(bounds)) != len(bounds):
            raise ValueError("categories must have strictly increasing min_phi")
        return self


class SinsSettings(Section):
    """Thresholds of the CT-derived SINS components (Fisher et al., Spine 2010), all [D]."""

    #: Body centroid off the line through its neighbours' centroids: translation.
    translation_mm: float = Field(default=5.0, gt=0)
    #: Wedge angle of the body: kyphosis (sagittal, anterior lower) / scoliosis (coronal).
    kyphosis_wedge_deg: float = Field(default=10.0, gt=0)
    scoliosis_wedge_deg: float = Field(default=10.0, gt=0)
    #: Height loss counted as collapse (Genant grade 1 starts at 20 %).
    collapse_min_loss: float = Field(default=0.2, gt=0, lt=0.5)
    #: Lesion volume in the posterior elements on one side that counts as involvement, and the
    #: half width of the midline band (spinous process) that belongs to neither side.
    posterolateral_min_ml: float = Field(default=0.05, ge=0)
    midline_half_width_mm: float = Field(default=5.0, ge=0)


class MethodSettings(Section):
    """Everything the measurements, strength, loads, risk and SINS depend on."""

    calibration: CalibrationSettings = CalibrationSettings()
    measurement: MeasurementSettings = MeasurementSettings()
    strength: StrengthSettings = StrengthSettings()
    loads: LoadSettings = LoadSettings()
    factor_of_risk: FactorOfRiskSettings = FactorOfRiskSettings()
    sins: SinsSettings = SinsSettings()
