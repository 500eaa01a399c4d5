"""What every service does first: read and validate its configuration, configure JSON logs,
silence library warnings that quote element values (patient names or IDs), log its settings;
then start its metrics endpoint.
"""

from __future__ import annotations

import logging
import sys
import warnings

from pydicom import config as pydicom_config

from spinemets import logs, metrics
from spinemets.config import CommonSettings, Model, load_section, read_raw
from spinemets.errors import ConfigError, SpineMetsError

#: Exit status of a service refusing to start on a bad configuration.
EXIT_BAD_CONFIG = 2
#: Exit status of a service that cannot bind its metrics endpoint.
EXIT_CANNOT_START = 1


def start_service(name: str, model: type[Model]) -> tuple[CommonSettings, Model]:
    """Validated ``common`` and ``name`` sections; exits with status 2, naming the bad value."""
    try:
        raw = read_raw()
        common = load_section(CommonSettings, "common", raw)
        settings = load_section(model, name, raw)
    except ConfigError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_CONFIG) from None
    logs.configure(name, common.log_level)
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
    warnings.filterwarnings("ignore", message=".*intended person name", category=UserWarning)
    logging.getLogger(name).info(
        "settings", extra=logs.fields(settings=settings.model_dump(mode="json")))
    return common, settings


def start_metrics(name: str, service_metrics: metrics.ServiceMetrics, host: str,
                  port: int) -> metrics.Exporter | None:
    """:func:`spinemets.metrics.serve`; exits with status 1, logging why, if ``port`` is taken."""
    try:
        return metrics.serve(service_metrics, host, port)
    except SpineMetsError as exc:
        logging.getLogger(name).error("cannot start: %s", exc)
        raise SystemExit(EXIT_CANNOT_START) from None
