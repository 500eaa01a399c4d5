"""The error hierarchy of the project: one root, specific subclasses.

Every error carries a short machine-readable ``reason`` (stored in the job table and shown in
logs) and a human message.
"""

from __future__ import annotations


class SpineMetsError(Exception):
    """Root of all errors raised by the project's code."""

    reason = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class ConfigError(SpineMetsError):
    """A configuration value is missing or invalid."""

    reason = "bad-config"


class InputError(SpineMetsError):
    """The input series cannot be processed (bad DICOM, bad geometry): it is quarantined."""

    reason = "bad-input"


class GeometryError(InputError):
    """The slices of a series do not form a regular volume."""

    reason = "bad-geometry"


class ModelError(SpineMetsError):
    """A model is missing, not ready, or does not match what the client expects."""

    reason = "model"


class DeliveryError(SpineMetsError):
    """A result object could not be delivered to a destination."""

    reason = "delivery"


class CallCancelledError(SpineMetsError):
    """The caller of a long call went away (cancelled, past its deadline, disconnected): the
    work stops, as nobody will receive its result."""

    reason = "cancelled"
