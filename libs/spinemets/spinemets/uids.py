"""Deterministic DICOM UIDs for result objects.

A retried job yields the same UIDs, so a repeated C-STORE replaces the same object at the PACS
instead of creating a duplicate. UIDs are ``2.25.<uuid5 integer>`` (PS3.5 B.2), derived from the
input series UID, the model versions and the object's role.
"""

from __future__ import annotations

import uuid

_NAMESPACE = uuid.UUID("6f1c2d4e-9a57-5b1e-8f3c-2a9d7e4b6c10")


def derived_uid(*parts: str) -> str:
    """Return a UID determined by ``parts`` (order matters)."""
    if not parts or any(not p for p in parts):
        raise ValueError("derived_uid needs non-empty parts")
    return f"2.25.{uuid.uuid5(_NAMESPACE, chr(0).join(parts)).int}"
