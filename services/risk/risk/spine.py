"""The whole spine assessment of one series: every measurement of the risk service.

:func:`assess_spine` takes the CT, the label maps that exist (vertebrae always; muscles and
lesions when their models ran) and the instance headers, and returns a
:class:`SpineAssessment`: calibration, body parameters, and per vertebra its geometry,
height loss, density, lesions, strength, loads, factors of risk and SINS, plus the muscles per
level and side. What cannot be measured is :class:`~risk.values.Missing` with its reason. The
SR writer and the JSON export (:mod:`risk.research_export`) read this object.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from risk import (
    density,
    factor_of_risk,
    lesion_type,
    loads,
    muscles,
    sins,
    strength,
    vertebral_body,
)
from risk.calibration import Calibration, ScanInfo, calibrate
from risk.density import LesionBurden, VertebraDensity
from risk.factor_of_risk import FactorOfRisk
from risk.lesion_type import LesionTypeSettings
from risk.loads import BodyParameters, LevelLoad
from risk.method_settings import MethodSettings
from risk.muscles import MuscleMeasurement
from risk.sins import Sins
from risk.strength import VertebraStrength
from risk.values import Missing
from risk.vertebral_body import HeightLoss, VertebraGeometry
from spinemets import labels
from spinemets.geometry import Volume
from spinemets.labelmaps import LabelMap


@dataclass(frozen=True)
class VertebraAssessment:
    """Everything measured and estimated for one vertebra."""

    level: str
    label: labels.Label
    geometry: VertebraGeometry
    height_loss: HeightLoss
    density: VertebraDensity
    lesions: LesionBurden | Missing
    strength: VertebraStrength
    loads: tuple[LevelLoad, ...]
    factors_of_risk: tuple[FactorOfRisk, ...]
    sins: Sins


@dataclass(frozen=True)
class SpineAssessment:
    """The assessment of one series (vertebrae cranial to caudal)."""

    calibration: Calibration
    body: BodyParameters
    vertebrae: tuple[VertebraAssessment, ...]
    muscles: tuple[MuscleMeasurement, ...] | Missing
    has_muscle_segmentation: bool
    has_lesion_segmentation: bool
    methods: MethodSettings
    lesion_types: LesionTypeSettings


def _union(label_map: LabelMap | None, group: labels.Group) -> np.ndarray | None:
    if label_map is None:
        return None
    values = [v for v, name in label_map.labels.items()
              if labels.by_name(name).group is group]
    return np.isin(label_map.array, values) if values else None


def assess_spine(volume: Volume, vertebra_map: LabelMap, muscle_map: LabelMap | None,
                 lesion_map: LabelMap | None, sources: Sequence[Dataset],
                 settings: MethodSettings,
                 lesion_types: LesionTypeSettings | None = None) -> SpineAssessment:
    """Measure and estimate everything for the vertebrae of ``vertebra_map``.

    All maps must be on the grid of ``volume`` (checked by the caller). Lesions and the
    vertebra's lesion type follow :mod:`risk.lesion_type` with ``lesion_types`` (the rule of
    the SEG and SR).
    """
    ct, geometry = volume.array, volume.geometry
    scan = ScanInfo.from_headers(sources)
    calibration = calibrate(ct, geometry, _union(muscle_map, labels.Group.MUSCLE), scan,
                            settings.calibration)
    body = loads.body_parameters(sources, settings.loads)
    voxels = vertebral_body.vertebra_voxels(vertebra_map, geometry)
    located = vertebral_body.locate_bodies(voxels, geometry)
    measurement = settings.measurement
    geometries = {level: vertebral_body.measure_geometry(level, voxels[level], frame, split,
                                                         geometry, measurement)
                  for level, (frame, split) in located.items()}
    losses = vertebral_body.height_losses(list(geometries.values()))
    frames = {level: g.frame for level, g in geometries.items() if not g.truncated}

    muscle_list: tuple[MuscleMeasurement, ...] | Missing = muscles.missing_extensors(None)
    measured_arms: dict[str, tuple[float, float]] = {}
    if muscle_map is not None:
        muscle_list = muscles.measure_muscles(ct, muscle_map, geometry, frames, measurement)
        measured_arms = {level: (e.moment_arm_mm, e.csa_mm2)
                         for level, e in muscles.extensors(muscle_list).items()}

    lesion_rule = lesion_types or LesionTypeSettings()
    found_lesions = ({} if lesion_map is None else
                     {f.level: f for f in lesion_type.analyse(vertebra_map, lesion_map,
                                                              lesion_rule)})
    assessments = []
    for level, (_, split) in located.items():
        v = voxels[level]
        g = geometries[level]
        body_mask = split.body
        lesions: LesionBurden | Missing = density.NO_LESION_MAP
        lesion_mask = None
        if level in found_lesions:
            kept = density.kept_lesions(found_lesions[level], v)
            lesion_mask = np.logical_or.reduce(list(kept.values()))
            lesions = density.measure_lesions(kept, found_lesions[level].type, v, body_mask,
                                              g.frame, geometry,
                                              settings.sins.midline_half_width_mm)
        dens = density.measure_density(ct, v, body_mask, lesion_mask, geometry, calibration,
                                       measurement)
        present = None if isinstance(lesions, Missing) else lesions.types_present
        est = strength.measure_strength(ct, v, body_mask, g.frame, geometry, calibration,
                                        dens.vbmd_mg_cm3, present, measurement,
                                        settings.strength)
        why = (muscles.missing_extensors(muscle_map) if not v.truncated
               else vertebral_body.TRUNCATED)
        arm, source, csa = loads.moment_arm_for(level, measured_arms, settings.loads, why)
        level_loads = loads.level_loads(level, body, arm, source, csa, settings.loads)
        assessments.append(VertebraAssessment(
            level, labels.vertebra(level), g, losses[level], dens, lesions, est, level_loads,
            factor_of_risk.factors_of_risk(est, level_loads, settings.factor_of_risk),
            sins.score(level, geometries, losses[level], lesions, settings.sins)))
    return SpineAssessment(calibration, body, tuple(assessments), muscle_list,
                           muscle_map is not None, lesion_map is not None, settings, lesion_rule)
