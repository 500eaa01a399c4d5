"""Measured values that may be missing: a measurement that cannot be made says why.

Result dataclasses hold ``float | Missing`` instead of NaN or a guessed number, so every
consumer (SR writer, JSON export, report) can tell "not measured, because ..." from a value.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Missing:
    """Why a value is absent: a short machine-readable ``reason`` and a sentence."""

    reason: str
    detail: str = ""


#: A number, or why there is none.
Measured = float | Missing


def known(value: T | Missing) -> T | None:
    """``value`` itself, or None when it is :class:`Missing`."""
    return None if isinstance(value, Missing) else value

