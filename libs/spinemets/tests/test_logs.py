"""Service logs: JSON lines of the service's own records, without the libraries' chatter."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from spinemets import logs


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """Put back the root handlers and the levels :func:`logs.configure` changes."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    levels = {name: logging.getLogger(name).level for name in logs.NOISY_LIBRARIES}
    yield
    for handler in root.handlers:
        handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, noisy_level in levels.items():
        logging.getLogger(name).setLevel(noisy_level)


@pytest.mark.usefixtures("restored_logging")
def test_info_of_the_service_is_kept_and_library_chatter_dropped(tmp_path: Path) -> None:
    path = tmp_path / "risk.log"
    logs.configure("risk", "INFO", path)
    with logs.context(job="7"):
        logging.getLogger("risk.assess").info("assessed", extra=logs.fields(vertebrae=17))
    logging.getLogger("fontTools.subset").info("glyf pruned")
    logging.getLogger("highdicom.seg.sop").info('copy attributes of module "Patient"')
    logging.getLogger("highdicom.seg.sop").warning("a warning is kept")
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(r["logger"], r["message"]) for r in records] == [
        ("risk.assess", "assessed"), ("highdicom.seg.sop", "a warning is kept")]
    assert records[0]["service"] == "risk" and records[0]["job"] == "7"
    assert records[0]["vertebrae"] == 17
