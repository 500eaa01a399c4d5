"""Scraping the services' metrics endpoints (demo and end-to-end tests) and where they are."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import generate_latest

from spinemets import metrics
from spinemets.config import read_raw
from stack.scrape import Scrape, scrape, stage_table, wait_for_stages
from stack.stack import StackConfig

REPO = Path(__file__).resolve().parents[3]


def test_stages_are_summarised_from_the_exposition_text() -> None:
    service = metrics.ServiceMetrics("example", ("one", "two"))
    service.observe_stage("one", 0.5)
    service.observe_stage("one", 1.5)
    parsed = Scrape.parse(generate_latest(service.registry).decode())
    assert parsed.stages("example") == {"one": (2.0, 2.0), "two": (0.0, 0.0)}
    assert parsed.value("spinemets_example_stage_seconds_count", stage="one") == 2.0
    assert parsed.value("spinemets_example_stage_seconds_count", stage="three") is None
    table = stage_table({"example": parsed})
    assert "example    one                   2      1.000" in table
    assert "example    two                   0          -" in table


def test_wait_for_stages_scrapes_until_every_stage_is_counted() -> None:
    service = metrics.ServiceMetrics("example", ("one", "two"))
    exporter = metrics.Exporter(service.registry, "127.0.0.1", 0)
    exporter.start()
    try:
        service.observe_stage("one", 0.1)
        partial = wait_for_stages({"example": exporter.url}, timeout=0.2)
        assert partial["example"].stages("example")["two"] == (0.0, 0.0)  # gave up, last scrape
        service.observe_stage("two", 0.1)
        done = wait_for_stages({"example": exporter.url}, timeout=5)
        assert all(count == 1 for count, _ in done["example"].stages("example").values())
        assert scrape(exporter.url).value("spinemets_example_stage_seconds_count",
                                          stage="two") == 1.0
    finally:
        exporter.stop()


def test_metrics_endpoints_of_the_shipped_configuration() -> None:
    raw = read_raw(REPO / "config" / "spinemets.yaml", {})
    config = StackConfig.load(raw)
    assert [config.metrics_url(s) for s in ("listener", "segmenter", "registrar", "risk")] == [
        f"http://127.0.0.1:{port}/metrics" for port in (9101, 9102, 9103, 9104)]
    raw["risk"]["metrics_port"] = 0
    disabled = StackConfig.load(raw)
    assert disabled.metrics_url("risk") is None
    assert "risk       disabled (metrics_port 0)" in disabled.metrics_summary()
