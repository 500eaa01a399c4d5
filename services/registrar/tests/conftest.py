"""Baseline and follow-up phantoms of one patient, compared once per test session.

Seeds 4_100_000.. are used by the registrar's tests only (phantom tests: 4_200_000..).
"""

from __future__ import annotations

import pytest

from phantom import Phantom, PhantomOptions, generate
from phantom.followup import FollowUp, follow_up
from phantom.options import FollowUpOptions
from registrar.longitudinal import Comparison, Scan, compare
from registrar.settings import ChangeSettings, RegistrationSettings

Pair = tuple[FollowUp, Comparison]


def scan(p: Phantom) -> Scan:
    return Scan(p.ct, p.vertebrae, p.lesions)


def compared(baseline: PhantomOptions, later: FollowUpOptions) -> Pair:
    """The follow-up of ``baseline`` and the registrar's comparison of the two studies."""
    truth = follow_up(generate(baseline), later)
    comparison = compare(scan(truth.baseline), scan(truth.phantom), RegistrationSettings(),
                         ChangeSettings())
    assert comparison is not None
    return truth, comparison


@pytest.fixture(scope="session")
def lumbar() -> Pair:
    """T11-L3 on a 1 x 1 x 1.5 mm grid: 3 lesions, 1 resolves, 2 new ones."""
    return compared(PhantomOptions(seed=4_100_001, levels=("T11", "L3"), spacing=(1.0, 1.0, 1.5),
                                   matrix=180, lesions=3),
                    FollowUpOptions(seed=1, new_lesions=2, resolved=1))


@pytest.fixture(scope="session")
def thoracic() -> Pair:
    """T4-T9 on a 0.8 x 0.8 x 2 mm grid: 2 lesions, 1 resolves, 1 new one, a new fracture."""
    return compared(PhantomOptions(seed=4_100_002, levels=("T4", "T9"), spacing=(0.8, 0.8, 2.0),
                                   matrix=220, lesions=2),
                    FollowUpOptions(seed=2, new_lesions=1, resolved=1, compression="random"))
