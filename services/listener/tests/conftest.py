"""Fixtures of the listener tests: fake downstream services and in-process listeners."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the test kit module beside this file

from listener_testkit import PSEUDONYM_KEY, Downstream, listener_settings

from listener.app import Listener


@pytest.fixture
def downstream() -> Iterator[Downstream]:
    fakes = Downstream()
    yield fakes
    fakes.server.stop(0)


@pytest.fixture
def start_listener(tmp_path: Path, downstream: Downstream) -> Iterator[Callable[..., Listener]]:
    """Start listeners (in-process) over ``tmp_path/state``; all are stopped at teardown."""
    started: list[Listener] = []

    def start(**overrides: Any) -> Listener:
        settings = listener_settings(tmp_path / "state", downstream.address, **overrides)
        app = Listener(settings, PSEUDONYM_KEY, tmp_path)
        app.start()
        started.append(app)
        return app

    yield start
    for app in started:
        app.stop()
