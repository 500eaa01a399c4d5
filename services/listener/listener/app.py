"""The listener process: SCP, data service, completion timer and job runner, started and stopped
in order. Health turns SERVING once everything is up; stopping drains in dependency order (the
runner's calls need the data service, so gRPC stops last).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from pynetdicom.transport import ThreadedAssociationServer

from listener import server
from listener.completion import Completion
from listener.db import Database
from listener.metrics import ListenerMetrics
from listener.pairing import Pairer
from listener.priors import PriorFinder
from listener.runner import Runner
from listener.settings import Settings
from listener.spool import Spool
from listener.steps import Peers
from spinemets import logs, metrics
from spinemets.config import BaselineRule

log = logging.getLogger(__name__)

DATABASE_FILE = "listener.sqlite"


class Listener:
    """All parts of the listener, wired with their dependencies."""

    def __init__(self, settings: Settings, pseudonym_key: bytes, data_dir: Path,
                 baseline: BaselineRule) -> None:
        self.settings = settings
        self.secret = pseudonym_key
        state = settings.state_path(data_dir)
        self.spool = Spool(state)
        self.db = Database(state / DATABASE_FILE)
        self.metrics = ListenerMetrics()
        self.metrics.watch(self.db)
        self.grpc = server.grpc_server(settings, self.db, self.spool)
        self.data_service_address = settings.data_service_address(self.grpc.port)
        self.peers = Peers(settings, self.data_service_address)
        self.completion = Completion(self.db, self.spool, settings.rules,
                                     settings.completion_idle_s, settings.poll_interval_s,
                                     metrics=self.metrics)
        finder = (PriorFinder(settings, baseline, self.spool, self.db, pseudonym_key,
                              self.metrics)
                  if settings.priors.pacs is not None else None)
        self.pairer = Pairer(self.db, self.peers, finder, settings.priors,
                             settings.poll_interval_s, self.metrics)
        self.runner = Runner(self.db, self.spool, self.peers, self.pairer, settings.retry,
                             settings.runner_workers, settings.poll_interval_s,
                             metrics=self.metrics)
        self._dicom: ThreadedAssociationServer | None = None
        self.exporter: metrics.Exporter | None = None
        self._stopped = False

    @property
    def dicom_port(self) -> int:
        if self._dicom is None:
            raise RuntimeError("the SCP is not running")
        return int(self._dicom.server_address[1])

    def start(self) -> None:
        """Start every part; :class:`SpineMetsError` if the metrics port cannot be bound."""
        self.exporter = metrics.serve(self.metrics, self.settings.grpc_host,
                                      self.settings.metrics_port)
        self.grpc.start()
        self.completion.start()
        self.runner.start()
        self._dicom = server.start_dicom(self.settings, self.spool, self.db, self.secret,
                                         self.metrics)
        self.grpc.set_serving(True)
        log.info("listener serving", extra=logs.fields(
            ae_title=self.settings.ae_title, dicom_port=self.dicom_port,
            grpc_port=self.grpc.port, data_service=self.data_service_address,
            metrics=self.exporter.url if self.exporter is not None else None))

    def stop(self) -> None:
        """Stop accepting associations, let running ones and the current steps finish, stop."""
        if self._stopped:
            return
        self._stopped = True
        grace = self.settings.drain_s
        if self._dicom is not None:
            self._dicom.shutdown()
            deadline = time.monotonic() + grace
            while self._dicom.active_associations and time.monotonic() < deadline:
                time.sleep(0.05)
            for assoc in self._dicom.active_associations:
                assoc.abort()
        self.completion.stop()
        self.runner.stop()
        self.grpc.stop(grace)
        self.peers.close()
        if self.exporter is not None:
            self.exporter.stop()
        self.metrics.unwatch()
        self.db.close()
        log.info("listener stopped")
