"""Reading the services' Prometheus endpoints, as a scraper would: samples by name and labels,
and the per-stage latency histograms (``spinemets_<service>_stage_seconds``) summarised.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from listener.metrics import PRIOR_STAGES
from spinemets.metrics import metric_name

#: Stages, by service, that a job need not go through: where no PACS is searched for priors,
#: the listener never observes its prior stages.
CONDITIONAL_STAGES: Mapping[str, Collection[str]] = {"listener": PRIOR_STAGES}


@dataclass(frozen=True)
class Scrape:
    """One scrape of an endpoint: every sample by (name, labels)."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = float(sample.value)
        return cls(samples)

    def value(self, name: str, **labels: str) -> float | None:
        """The sample ``name`` with exactly ``labels``, or ``None`` if the endpoint lacks it."""
        return self.samples.get((name, frozenset(labels.items())))

    def stages(self, service: str) -> dict[str, tuple[float, float]]:
        """``{stage: (count, sum of seconds)}`` of the service's stage histogram."""
        name = metric_name(service, "stage_seconds")
        found: dict[str, tuple[float, float]] = {}
        for (sample, labels), value in self.samples.items():
            stage = dict(labels).get("stage")
            if stage is None or sample not in (f"{name}_count", f"{name}_sum"):
                continue
            count, total = found.get(stage, (0.0, 0.0))
            found[stage] = (value, total) if sample.endswith("_count") else (count, value)
        return found


def scrape(url: str, timeout: float = 5.0) -> Scrape:
    """GET the endpoint and parse the text exposition format."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return Scrape.parse(response.read().decode("utf-8"))


def wait_for_stages(urls: dict[str, str], timeout: float = 30.0,
                    services: Sequence[str] | None = None,
                    optional: Mapping[str, Collection[str]] = CONDITIONAL_STAGES
                    ) -> dict[str, Scrape]:
    """Scrape ``{service: url}`` until every stage of every service, but those ``optional``
    ones a run need not go through, has a non-zero count (or the time is up); the last scrapes.
    A job's last stages are observed just after its results reach the PACS, so a scrape right
    then may still miss them."""
    deadline = time.monotonic() + timeout
    while True:
        scrapes = {service: scrape(url) for service, url in urls.items()
                   if services is None or service in services}
        done = all(stages and all(count > 0 for stage, (count, _) in stages.items()
                                  if stage not in optional.get(name, ()))
                   for name, stages in ((n, s.stages(n)) for n, s in scrapes.items()))
        if done or time.monotonic() >= deadline:
            return scrapes
        time.sleep(0.5)


def stage_table(scrapes: dict[str, Scrape]) -> str:
    """Lines of ``service stage count mean`` for printing."""
    lines = [f"  {'service':<10} {'stage':<16} {'count':>6} {'mean (s)':>10}"]
    for service, result in scrapes.items():
        for stage, (count, total) in result.stages(service).items():
            mean = f"{total / count:.3f}" if count else "-"
            lines.append(f"  {service:<10} {stage:<16} {count:>6.0f} {mean:>10}")
    return "\n".join(lines)
