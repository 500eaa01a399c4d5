"""DIMSE status codes shared by the services that send or answer DICOM messages."""

from __future__ import annotations

from pynetdicom.status import code_to_category


def stored(status: int | None) -> bool:
    """Whether a C-STORE status means the object is stored (success or warning, PS3.4 B.2.3)."""
    return status is not None and code_to_category(status) in ("Success", "Warning")
