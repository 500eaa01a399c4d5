"""Fixtures of the listener tests: fake downstream services, in-process listeners, Orthanc as
the PACS that priors are found in."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the test kit module beside this file

from listener_testkit import PSEUDONYM_KEY, Downstream, listener_settings

from listener.app import Listener
from peers import Orthanc
from spinemets.config import BaselineRule


@pytest.fixture(scope="session")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """A real Orthanc (Query/Retrieve SCP) shared by the tests; each uses its own patients."""
    if shutil.which("Orthanc") is None:
        pytest.skip("Orthanc is not installed (make apt)")
    server = Orthanc(tmp_path_factory.mktemp("pacs"))
    server.start()
    yield server
    server.stop()


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
        app = Listener(settings, PSEUDONYM_KEY, tmp_path, BaselineRule())
        app.start()
        started.append(app)
        return app

    yield start
    for app in started:
        app.stop()
