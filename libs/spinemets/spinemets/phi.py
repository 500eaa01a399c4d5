"""Pseudonymisation of patient identifiers for logs and keys.

Patient names and IDs never appear in logs in clear text; where a patient must be recognised
(pairing follow-ups), a keyed hash is used.
"""

from __future__ import annotations

import hashlib
import hmac


def patient_key(patient_id: str, issuer: str, secret: bytes) -> str:
    """Keyed, stable pseudonym of a patient (HMAC-SHA256, 16 hex characters)."""
    message = f"{issuer}\x00{patient_id}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:16]
