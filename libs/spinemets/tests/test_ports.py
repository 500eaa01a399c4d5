"""Free ports: below the ephemeral range, never repeated, and within a process's share."""

from __future__ import annotations

import pytest

from spinemets import ports


def test_ports_are_distinct_free_and_below_the_ephemeral_range() -> None:
    chosen = [ports.free_port() for _ in range(50)]
    assert len(set(chosen)) == len(chosen)
    assert all(1024 <= p < ports._ephemeral_start() for p in chosen)
    assert all(ports._bindable(p) for p in chosen)


@pytest.mark.parametrize("index", [0, 1, 2])
def test_a_share_keeps_to_its_residue_so_parallel_workers_never_collide(
        index: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ports.SHARE_VARIABLE, f"{index}/3")
    assert {ports.free_port() % 3 for _ in range(40)} == {index}


@pytest.mark.parametrize("value", ["2", "a/b", "2/2", "-1/2", "0/1/2"])
def test_a_malformed_share_is_refused_with_the_variable_named(
        value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ports.SHARE_VARIABLE, value)
    with pytest.raises(ValueError, match=ports.SHARE_VARIABLE):
        ports.free_port()
