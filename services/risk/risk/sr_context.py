"""What the SR's risk numbers depend on: the density calibration and the body parameters.

They go in the report's Qualitative Evaluations container (TID 1500 row 12: CODE and TEXT
items about the whole report), one place where a reader finds the record:

- Calibration Method (DCM 122422): phantom, internal or uncalibrated (99SPMETS D-010..D-012);
  Density calibration reference material (99SPMETS D-002): K2HPO4 (99SPMETS D-003) or
  Calcium Hydroxyapatite (SCT 256579008); then as text the KVP (DCM 113733, "120 kV"), the
  convolution kernel, the scanner, the source of the coefficients, the fit residual, a
  contrast agent named in the header and the calibration notes;
- Body weight (LN 29463-7) and Body height (LN 8302-2) as text with their unit, Subject Sex
  (DCM 121032: Male / Female), where each came from (DICOM header or configuration) and the
  anthropometric table of the load model.

The numbers themselves are typed where they are used: the calibration coefficients are the
derivation parameters of every vBMD, weight and height those of every compressive load
(:mod:`risk.sr_vertebra`). Measurement groups of TID 1501 would hold NUM items, but a report
whose other groups reference SEG segments is validated by PixelMed as TID 1411 throughout.
"""

from __future__ import annotations

import highdicom as hd
from pydicom.sequence import Sequence as DicomSequence

from risk.method_settings import CalibrationMethod, Material, Sex
from risk.objects import concept
from risk.spine import SpineAssessment
from risk.sr_items import Content, missing_text
from risk.values import Missing
from spinemets import codes

_P = codes.PRIVATE_SCHEME

METHODS = {CalibrationMethod.PHANTOM: _P["calibration_phantom"],
           CalibrationMethod.INTERNAL: _P["calibration_internal"],
           CalibrationMethod.UNCALIBRATED: _P["calibration_uncalibrated"]}
MATERIALS = {Material.K2HPO4: _P["k2hpo4"], Material.HA: codes.HYDROXYAPATITE}
ANTHROPOMETRY = "de Leva, J Biomech 1996 (adjusted Zatsiorsky-Seluyanov)"
NO_KVP = Missing("no-kvp", "KVP (0018,0060) is not in the header")


def context_content(spine: SpineAssessment) -> Content:
    """The calibration record and the body parameters of ``spine``."""
    c, body = spine.calibration, spine.body
    out = Content()
    out.code(codes.CALIBRATION_METHOD, METHODS[c.method])
    out.code(_P["density_material"], MATERIALS[c.material])
    out.text(codes.KVP, missing_text(NO_KVP) if c.kvp is None else f"{c.kvp:g} kV")
    texts = [("convolution_kernel", c.kernel), ("scanner", c.scanner),
             ("calibration_source", c.source),
             ("calibration_residual", "" if c.residual_rms_hu is None
              else f"{c.residual_rms_hu:.2f} HU"),
             ("contrast_agent", c.contrast_agent or ""),
             *(("calibration_note", note) for note in c.notes)]
    for key, value in texts:
        if value:
            out.text(_P[key], value)
    out.text(codes.BODY_WEIGHT, f"{body.mass_kg:g} kg")
    out.text(codes.BODY_HEIGHT, f"{body.height_m:g} m")
    out.code(codes.SUBJECT_SEX, codes.MALE if body.sex is Sex.MALE else codes.FEMALE)
    out.text(_P["body_sources"], f"weight: {body.mass_source}; height: {body.height_source}; "
             f"sex: {body.sex_source}")
    out.text(_P["anthropometric_table"], ANTHROPOMETRY)
    return out


def context_container(spine: SpineAssessment) -> hd.sr.ContainerContentItem:
    """The report's Qualitative Evaluations container (TID 1500 row 12)."""
    content = context_content(spine)
    container = hd.sr.ContainerContentItem(
        name=concept(codes.QUALITATIVE_EVALUATIONS),
        relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    container.ContentSequence = DicomSequence(
        [item for evaluation in content.evaluations for item in evaluation]
        + list(content.texts))
    return container
