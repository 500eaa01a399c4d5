"""Coded concepts: standard DICOM / SNOMED concepts used in SR and SEG, and the private scheme.

Concepts without a standard code (lesion types, vBMD, strength, load, factor of risk, SINS)
use the project's private coding scheme ``99SPMETS``, defined here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Coding Scheme Designator of the project's private scheme (PS3.16 8.2: "99" prefix).
PRIVATE_DESIGNATOR = "99SPMETS"


@dataclass(frozen=True)
class Code:
    """A coded concept: code value, coding scheme designator, code meaning."""

    value: str
    scheme: str
    meaning: str


#: The private scheme, one table. Keys are stable identifiers used in the code.
PRIVATE_SCHEME: dict[str, Code] = {
    key: Code(value, PRIVATE_DESIGNATOR, meaning)
    for key, value, meaning in (
        ("lesion_lytic", "L-001", "Lytic"),
        ("lesion_blastic", "L-002", "Blastic"),
        ("lesion_mixed", "L-003", "Mixed lytic and blastic"),
        ("lesion_type", "L-100", "Metastatic lesion type"),
        ("algorithm_demo", "A-001", "Phantom-trained demo model, not for clinical use"),
        # Longitudinal comparison with the prior study (risk.sr_longitudinal).
        ("prior_study", "C-001", "Prior study compared"),
        ("lesion_volume_prior", "C-002", "Lesion volume in prior study"),
        ("lesion_volume_change", "C-003", "Lesion volume change since prior study"),
        ("lesion_volume_change_percent", "C-004", "Lesion volume change since prior study, "
         "percent"),
        ("new_lesions", "C-005", "Number of new lesions"),
        ("resolved_lesions", "C-006", "Number of resolved lesions"),
        ("growing_lesions", "C-007", "Number of growing lesions"),
        ("registration_dice", "C-010", "Registration Dice similarity coefficient"),
        ("registration_hd95", "C-011", "Registration 95th percentile Hausdorff distance"),
        ("registration_failed", "C-012", "Registration failed"),
        # Fracture-risk numbers per vertebra and muscle (risk.sr_vertebra, risk.sr_muscles).
        ("lesion_volume", "L-101", "Metastatic lesion volume"),
        ("lesion_body_fraction", "L-102", "Metastatic lesion fraction of vertebral body"),
        ("lesion_volume_posterior", "L-103", "Metastatic lesion volume in posterior elements"),
        ("height_loss", "G-001", "Vertebral body height loss"),
        ("body_volume", "G-002", "Vertebral body volume"),
        ("vbmd", "D-001", "Trabecular volumetric bone mineral density"),
        ("density_material", "D-002", "Density calibration reference material"),
        ("k2hpo4", "D-003", "Dipotassium hydrogen phosphate (K2HPO4) equivalent"),
        ("calibration_phantom", "D-010", "Phantom calibration"),
        ("calibration_internal", "D-011", "Internal (phantomless) calibration"),
        ("calibration_uncalibrated", "D-012", "Uncalibrated, nominal coefficients"),
        ("bmd_category", "D-020", "ACR QCT trabecular spine BMD category"),
        ("convolution_kernel", "D-030", "Convolution kernel"),
        ("calibration_slope", "D-031", "Calibration slope"),
        ("calibration_intercept", "D-032", "Calibration intercept"),
        ("calibration_residual", "D-033", "Calibration fit residual, root mean square"),
        ("scanner", "D-034", "Scanner"),
        ("calibration_source", "D-035", "Calibration source"),
        ("contrast_agent", "D-036", "Contrast agent in the header"),
        ("calibration_note", "D-037", "Calibration note"),
        ("failure_load_ctra", "S-001", "Failure load by CT rigidity analysis"),
        ("failure_load_density_area", "S-002", "Failure load by density and area"),
        ("axial_rigidity", "S-003", "Minimum axial rigidity"),
        ("strength_confidence", "S-010", "Strength estimate confidence"),
        ("confidence_normal", "S-011", "Normal confidence"),
        ("confidence_lower", "S-012", "Lower confidence"),
        ("confidence_unknown", "S-013", "Confidence unknown"),
        ("confidence_reason", "S-014", "Reason for lower strength confidence"),
        ("compressive_load", "F-001", "Compressive load"),
        ("factor_of_risk", "F-002", "Factor of risk"),
        ("factor_of_risk_category", "F-003", "Factor of risk category"),
        ("activity", "F-010", "Activity"),
        ("failure_load_estimate", "F-011", "Failure load estimate"),
        ("sins_location", "N-001", "SINS location"),
        ("sins_pain", "N-002", "SINS pain"),
        ("sins_bone_lesion", "N-003", "SINS bone lesion quality"),
        ("sins_alignment", "N-004", "SINS spinal alignment"),
        ("sins_collapse", "N-005", "SINS vertebral body collapse"),
        ("sins_posterolateral", "N-006", "SINS posterolateral involvement"),
        ("sins_partial_total", "N-010", "SINS partial total of CT-derived components"),
        ("sins_upper_total", "N-011", "SINS highest possible total"),
        ("sins_category", "N-012", "SINS stability category"),
        ("sins_applicable", "N-013", "SINS applicable, lesion present"),
        ("muscle_posterior_offset", "M-001", "Posterior offset from vertebral body centroid"),
        ("muscle_left_offset", "M-002", "Left offset from vertebral body centroid"),
        ("extensor_moment_arm", "M-003", "Extensor moment arm"),
        ("muscle_plane_method", "M-010", "Lean tissue in the mid-body plane"),
        ("body_sources", "B-001", "Sources of body weight, height and sex"),
        ("anthropometric_table", "B-002", "Anthropometric table"),
        # Change of the fracture-risk numbers since the prior study (risk.sr_longitudinal).
        ("vbmd_prior", "C-020", "Trabecular volumetric BMD in prior study"),
        ("vbmd_change", "C-021", "Trabecular volumetric BMD change since prior study"),
        ("vbmd_change_percent", "C-022", "Trabecular volumetric BMD change since prior study, "
         "percent"),
        ("height_change", "C-023", "Vertebral body height change since prior study"),
        ("height_loss_change", "C-024", "Vertebral body height loss change since prior study"),
        ("failure_load_prior", "C-025", "Failure load in prior study"),
        ("failure_load_change", "C-026", "Failure load change since prior study"),
        ("failure_load_change_percent", "C-027", "Failure load change since prior study, "
         "percent"),
        ("factor_of_risk_prior", "C-028", "Factor of risk in prior study"),
        ("factor_of_risk_change", "C-029", "Factor of risk change since prior study"),
        ("change_reliable", "C-030", "Change since prior study reliable"),
    )
}

# Standard concepts of TID 1500 (PS3.16) used by the SR writer.
VOLUME = Code("118565006", "SCT", "Volume")
ATTENUATION_COEFFICIENT = Code("112031", "DCM", "Attenuation Coefficient")
MEAN = Code("373098007", "SCT", "Mean")
FINDING_SITE = Code("363698007", "SCT", "Finding Site")
VERTEBRA = Code("51282000", "SCT", "Vertebra")
MEASUREMENT_METHOD = Code("370129005", "SCT", "Measurement Method")
#: Value of a coded finding that is not there (e.g. the lesion type of a vertebra without lesion).
NONE = Code("260413007", "SCT", "None")

# Standard concepts of the SEG and SR writers (PS3.16 CID 7162, CID 100, CID 270; UCUM units).
ARTIFICIAL_INTELLIGENCE = Code("123110", "DCM", "Artificial Intelligence")
CT_UNSPECIFIED_BODY_REGION = Code("25045-6", "LN", "CT unspecified body region")
DEVICE = Code("121007", "DCM", "Device")
MILLILITER = Code("ml", "UCUM", "milliliter")
HOUNSFIELD_UNIT = Code("[hnsf'U]", "UCUM", "Hounsfield unit")
MILLIMETER = Code("mm", "UCUM", "millimeter")
PERCENT = Code("%", "UCUM", "percent")
NO_UNITS = Code("1", "UCUM", "no units")
LESIONS = Code("{lesions}", "UCUM", "lesions")
YES = Code("373066001", "SCT", "Yes")
NO = Code("373067005", "SCT", "No")

# Standard concepts of the fracture-risk content of the SR (PS3.16 TID 1500, CID 7470, CID 7469,
# CID 212, CID 7464, CID 244, CID 7455; LOINC body weight and height; UCUM units).
QUALITATIVE_EVALUATIONS = Code("C0034375", "UMLS", "Qualitative Evaluations")
HEIGHT = Code("121207", "DCM", "Height")
AREA = Code("42798000", "SCT", "Area")
DISTANCE = Code("121206", "DCM", "Distance")
TOPOGRAPHICAL_MODIFIER = Code("106233006", "SCT", "Topographical modifier")
ANTERIOR = Code("255549009", "SCT", "Anterior")
MIDDLE = Code("C25569", "NCIt", "Middle")
POSTERIOR = Code("255551008", "SCT", "Posterior")
DERIVATION = Code("121401", "DCM", "Derivation")
MAXIMUM = Code("56851009", "SCT", "Maximum")
TOTAL = Code("255619001", "SCT", "Total")
LATERALITY = Code("272741003", "SCT", "Laterality")
KVP = Code("113733", "DCM", "KVP")
CALIBRATION_METHOD = Code("122422", "DCM", "Calibration Method")
HYDROXYAPATITE = Code("256579008", "SCT", "Calcium Hydroxyapatite")
NORMAL = Code("17621005", "SCT", "Normal")
OSTEOPENIA = Code("312894000", "SCT", "Osteopenia")
OSTEOPOROSIS = Code("64859006", "SCT", "Osteoporosis")
BODY_WEIGHT = Code("29463-7", "LN", "Body weight")
BODY_HEIGHT = Code("8302-2", "LN", "Body height")
SUBJECT_SEX = Code("121032", "DCM", "Subject Sex")
MALE = Code("M", "DCM", "Male")
FEMALE = Code("F", "DCM", "Female")
MG_PER_CM3 = Code("mg/cm3", "UCUM", "milligram per cubic centimeter")
HU_PER_MG_CM3 = Code("[hnsf'U].cm3/mg", "UCUM", "Hounsfield unit per milligram per cubic "
                     "centimeter")
NEWTON = Code("N", "UCUM", "newton")
SQUARE_MILLIMETER = Code("mm2", "UCUM", "square millimeter")
KILOGRAM = Code("kg", "UCUM", "kilogram")
METER = Code("m", "UCUM", "meter")
SCORE = Code("{score}", "UCUM", "score")


def activity(name: str, meaning: str) -> Code:
    """The code of a configured activity of the load model: its name in the private scheme
    (a Long Code Value when longer than 16 characters)."""
    return Code(name, PRIVATE_DESIGNATOR, meaning)
