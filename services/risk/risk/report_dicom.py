"""The visual report as DICOM: an Encapsulated PDF and one Secondary Capture image per page.

- Encapsulated PDF Storage (PS3.3 A.45.1), Modality DOC, built on highdicom's
  :class:`~highdicom.SOPClass` (highdicom has no class of this IOD): Patient, General Study and
  Patient Study copied from the source CT as the SEG does, Encapsulated Document Series, General
  and SC Equipment, Encapsulated Document (title, LOINC 18748-4 "Diagnostic imaging study" as
  concept name from CID 7000, the PDF padded to even length, Burned In Annotation YES: the pages
  show the patient's name and ID, and Source Instance Sequence naming the CT images).
- Secondary Capture Image Storage (PS3.3 A.8.1), Modality OT, with
  :class:`highdicom.sc.SCImage`: RGB 8 bit, one instance per page in its own series, Burned In
  Annotation YES, Patient Orientation empty (the page is a document, the sagittal view carries
  its own orientation letters).

UIDs derive from the source series and models (:class:`~risk.provenance.Provenance`), so a
re-run replaces the report at the PACS; Content Date and Time are those of the study.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import highdicom as hd
import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian

from risk.objects import content_dates
from risk.provenance import Provenance
from risk.seg_writer import complete_type2
from risk.settings import Equipment

ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"
#: Document title concept: LOINC "Diagnostic imaging study" (CID 7000).
DOCUMENT_CONCEPT = ("18748-4", "LN", "Diagnostic imaging study")
#: SC Equipment Conversion Type: produced on a workstation.
WORKSTATION = "WSD"
UTF8 = "ISO_IR 192"


def _source_instances(slice_instance_uids: Sequence[str], sop_class_uid: str) -> list[Dataset]:
    """One reference per source instance (a multi-frame image once), in slice order."""
    items = []
    for uid in dict.fromkeys(u.split("#")[0] for u in slice_instance_uids):
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class_uid
        item.ReferencedSOPInstanceUID = uid
        items.append(item)
    return items


def _common(source: Dataset, equipment: Equipment, series_number: int,
            series_description: str) -> dict[str, Any]:
    """The constructor arguments both report objects share: the study of ``source``, the
    series number and description, the equipment, and the study's content date."""
    return {"study_instance_uid": str(source.StudyInstanceUID),
            "series_number": series_number, "series_description": series_description,
            "transfer_syntax_uid": ExplicitVRLittleEndian, "specific_character_set": UTF8,
            "manufacturer": equipment.manufacturer,
            "manufacturer_model_name": equipment.model_name,
            "software_versions": equipment.software_version,
            "device_serial_number": equipment.device_serial_number,
            **content_dates(source)}


def encapsulated_pdf(pdf: bytes, title: str, source: Dataset,
                     slice_instance_uids: Sequence[str], source_sop_class_uid: str,
                     provenance: Provenance, equipment: Equipment, series_number: int,
                     series_description: str) -> hd.SOPClass:
    """The Encapsulated PDF of ``pdf`` in the study of ``source`` (a header of the CT whose
    images, ``slice_instance_uids`` of class ``source_sop_class_uid``, it was made from)."""
    complete_type2([source])
    ds = hd.SOPClass(
        series_instance_uid=provenance.uid("report", "pdf", "series"),
        sop_instance_uid=provenance.uid("report", "pdf", "instance"),
        sop_class_uid=ENCAPSULATED_PDF_STORAGE,
        instance_number=1,
        modality="DOC",
        **_common(source, equipment, series_number, series_description))
    ds.copy_patient_and_study_information(source)
    ds.ConversionType = WORKSTATION
    ds.AcquisitionDateTime = None
    ds.BurnedInAnnotation = "YES"
    ds.DocumentTitle = title
    code = Dataset()
    code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = DOCUMENT_CONCEPT
    ds.ConceptNameCodeSequence = [code]
    ds.SourceInstanceSequence = _source_instances(slice_instance_uids, source_sop_class_uid)
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf + b"\x00" * (len(pdf) % 2)
    ds.EncapsulatedDocumentLength = len(pdf)
    return ds


def secondary_captures(pages: Sequence[npt.NDArray[np.uint8]], source: Dataset,
                       provenance: Provenance, equipment: Equipment, series_number: int,
                       series_description: str, title: str) -> list[hd.sc.SCImage]:
    """One RGB Secondary Capture per page image, instance ``n`` showing page ``n``."""
    complete_type2([source])
    images = []
    for number, pixels in enumerate(pages, start=1):
        sc = hd.sc.SCImage(
            pixel_array=pixels,
            photometric_interpretation="RGB",
            bits_allocated=8,
            coordinate_system="PATIENT",
            patient_orientation=("P", "F"),  # required by highdicom; emptied below
            series_instance_uid=provenance.uid("report", "sc", "series"),
            sop_instance_uid=provenance.uid("report", "sc", "instance", str(number)),
            instance_number=number,
            **_common(source, equipment, series_number, series_description))
        sc.copy_patient_and_study_information(source)
        sc.PatientOrientation = []
        sc.ImageLaterality = "U"  # unpaired: the spine
        sc.ConversionType = WORKSTATION
        del sc.DateOfSecondaryCapture, sc.TimeOfSecondaryCapture  # the render time: not kept
        sc.BurnedInAnnotation = "YES"
        sc.ImageComments = f"{title}, page {number} of {len(pages)}"
        images.append(sc)
    return images
