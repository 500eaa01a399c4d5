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
