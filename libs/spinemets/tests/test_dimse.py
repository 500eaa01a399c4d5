"""C-STORE status classification."""

from __future__ import annotations

import pytest

from spinemets.dimse import stored


@pytest.mark.parametrize(("status", "expected"), [
    (0x0000, True),   # success
    (0xB000, True),   # coercion of data elements (warning): stored
    (0xB007, True),   # data set does not match SOP class (warning): stored
    (0xA700, False),  # out of resources
    (0xC000, False),  # cannot understand
    (None, False),    # never sent
])
def test_success_and_warnings_count_as_stored(status: int | None, expected: bool) -> None:
    assert stored(status) is expected
