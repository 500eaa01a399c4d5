"""Settings validation, routing rules and retry backoff: pure functions, no I/O."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from listener.routing import SeriesAttributes, route
from listener.runner import backoff
from listener.scp import Allowlist
from listener.settings import Caller, RetryPolicy, Rule, Settings
from spinemets.config import load_section, read_raw
from spinemets.errors import ConfigError

CALLERS = [{"ae_title": "STORESCU"}]


@pytest.mark.parametrize(("override", "key"), [
    ({"ae_title": "A" * 17}, "listener.ae_title"),
    ({"ae_title": "BAD\\AE"}, "listener.ae_title"),
    ({"port": 70000}, "listener.port"),
    ({"grpc_port": -1}, "listener.grpc_port"),
    ({"segmenter": "localhost"}, "listener.segmenter"),
    ({"rules": [{"name": "r", "series_description": "(unclosed"}]},
     "listener.rules.0.series_description"),
    ({"allowed_callers": [{"ae_title": "X", "hosts": ["not-an-ip"]}]},
     "listener.allowed_callers.0.hosts.0"),
    ({"ignored_sop_classes": ["1.2.x"]}, "listener.ignored_sop_classes.0"),
    ({"allowed_callers": []}, "every association would be rejected"),
    ({"rules": [{"name": "a"}, {"name": "a"}]}, "unique"),
    ({"unknown_key": 1}, "listener.unknown_key"),
])
def test_bad_settings_are_refused_naming_the_key(override: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_section(Settings, "listener", {"listener": {"allowed_callers": CALLERS, **override}})


def test_shipped_configuration_is_valid() -> None:
    config = Path(__file__).parents[3] / "config" / "spinemets.yaml"
    settings = load_section(Settings, "listener", read_raw(config, environ={}))
    assert settings.port == 11112 and settings.grpc_port == 50051
    assert settings.state_path(Path("/data")) == Path("/data/listener")
    assert settings.data_service_address(50051) == "127.0.0.1:50051"
    assert not settings.allow_any_caller and settings.allowed_callers


SPINE = Rule(name="ct-spine", series_description="spine|body", min_slices=40)
THORAX = Rule(name="ct-thorax", series_description="^thorax", min_slices=100)


def test_first_matching_rule_wins() -> None:
    decision = route([SPINE, THORAX], SeriesAttributes("CT", "Thorax spine 1.0 B30f", 300))
    assert decision.rule == SPINE


def test_description_pattern_is_searched_case_insensitively() -> None:
    decision = route([THORAX], SeriesAttributes("CT", "THORAX 1mm", 120))
    assert decision.rule == THORAX


def test_unmatched_series_is_skipped_with_every_rules_reason() -> None:
    decision = route([SPINE, THORAX], SeriesAttributes("CT", "Spine bone", 12))
    assert decision.rule is None
    assert decision.reason == (
        "no rule matched: series has 12 slices, rule 'ct-spine' needs >= 40; "
        "series description 'Spine bone' does not match '^thorax' of rule 'ct-thorax'")


def test_modality_mismatch_and_no_rules() -> None:
    assert "modality 'MR'" in route([SPINE], SeriesAttributes("MR", "spine", 50)).reason
    assert route([], SeriesAttributes("CT", "spine", 50)).reason == "no routing rules configured"


def test_backoff_grows_exponentially_is_capped_and_jittered() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay_s=1.0, max_delay_s=10.0, factor=2.0)
    rng = random.Random(7)
    delays = [[backoff(policy, n, rng) for _ in range(200)] for n in (1, 2, 3, 6)]
    for nominal, samples in zip((1.0, 2.0, 4.0, 10.0), delays, strict=True):
        assert nominal / 2 <= min(samples) and max(samples) <= nominal
        assert max(samples) - min(samples) > nominal / 4  # jitter spreads retries


def test_allowlist_checks_title_and_optional_address() -> None:
    allowlist = Allowlist((Caller(ae_title="CT1"),
                           Caller.model_validate({"ae_title": "PACS",
                                                  "hosts": ["10.0.0.0/24", "192.168.1.5"]})))
    assert allowlist.refusal("CT1", "203.0.113.9") is None
    assert allowlist.refusal("CT1 ", "203.0.113.9") is None  # trailing pad is not significant
    assert allowlist.refusal("PACS", "10.0.0.77") is None
    assert allowlist.refusal("PACS", "192.168.1.5") is None
    assert (allowlist.refusal("PACS", "192.168.1.6")
            == "calling AE title not allowed from this address")
    assert allowlist.refusal("OTHER", "10.0.0.1") == "calling AE title not in the allowlist"
    assert Allowlist((), allow_any=True).refusal("ANYONE", "1.2.3.4") is None
