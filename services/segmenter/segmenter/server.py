"""Transport: ``SegmenterService.Segment`` over gRPC, and health that follows Triton's readiness."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import grpc
import numpy as np
import numpy.typing as npt

from segmenter.inference import segment
from segmenter.metrics import SegmenterMetrics
from segmenter.routing import segment_roles
from segmenter.settings import Settings
from segmenter.spec import ModelSpec
from segmenter.triton_client import TritonModel
from segmenter.volume_client import fetch_volume
from spinemets import labelmaps, logs
from spinemets.errors import CallCancelledError, InputError, ModelError
from spinemets.geometry import Volume
from spinemets.grpcutil import Server, guarded
from spinemets.v1 import segmenter_pb2, segmenter_pb2_grpc, volume_pb2

log = logging.getLogger(__name__)


def load_models(settings: Settings,
                metrics: SegmenterMetrics | None = None) -> dict[str, TritonModel]:
    """A Triton client per served role, from ``<model_repository>/<role>/model.json``."""
    models: dict[str, TritonModel] = {}
    for role in settings.roles:
        path = Path(settings.model_repository) / role / "model.json"
        spec = ModelSpec.load(path)
        if spec.role != role:
            raise ModelError(f"{path} describes a model for role {spec.role!r}, not {role!r}",
                             reason="bad-model-spec")
        models[role] = TritonModel(settings.triton_url, spec, settings.request_timeout_s,
                                   metrics)
    return models


def _present(label_map: labelmaps.LabelMap) -> list[str]:
    """Names of the labels that have voxels in the map."""
    counts = np.bincount(label_map.array.ravel(), minlength=256)
    return [name for value, name in sorted(label_map.labels.items()) if counts[value]]


class SegmenterService(segmenter_pb2_grpc.SegmenterServiceServicer):
    """Fetches the volume, runs each requested model, streams the label maps back."""

    def __init__(self, settings: Settings, models: Mapping[str, TritonModel],
                 metrics: SegmenterMetrics | None = None) -> None:
        self.settings = settings
        self.models = models
        self.metrics = metrics if metrics is not None else SegmenterMetrics()
        self._slots = threading.BoundedSemaphore(settings.parallel_series)

    @guarded
    def Segment(self, request: segmenter_pb2.SegmentRequest,  # noqa: N802
                context: grpc.ServicerContext) -> Iterator[volume_pb2.LabelMapChunk]:
        """Segment the series with the requested roles (all served roles when none is named)."""
        roles = list(request.roles) or list(self.settings.roles)
        unknown = sorted(set(roles) - set(self.models))
        if unknown:
            raise InputError(f"no model for roles {unknown} (served: {sorted(self.models)})",
                             reason="unknown-role")
        if not request.data_service:
            raise InputError("request names no data service", reason="missing-data-service")
        with logs.context(series=request.series.series_instance_uid), self._slots:
            with self.metrics.stage("volume_fetch"):
                volume = fetch_volume(request.data_service, request.series,
                                      self.settings.volume_timeout_s)
            with self.metrics.stage("segmentation"):
                maps = self._segment(volume, roles, context.is_active)
        return (chunk for label_map in maps for chunk in labelmaps.to_chunks(label_map))

    def _segment(self, volume: Volume, roles: list[str],
                 alive: Callable[[], bool]) -> list[labelmaps.LabelMap]:
        """Run each role's model on the volume (cropped roles inside their box) while the
        caller is ``alive``."""
        specs = {role: self.models[role].spec for role in roles}
        return segment_roles(volume, roles, specs, self.settings.crops,
                             lambda role, part: self._run(role, part, alive))

    def _run(self, role: str, volume: Volume, alive: Callable[[], bool]) -> labelmaps.LabelMap:
        """One role's model on a volume (or the part of it a crop rule gives). Before each
        batch of patches, a caller that went away (a listener killed, a deadline passed)
        stops the work with :class:`CallCancelledError` instead of leaving it to compete with the
        caller's retry."""
        model = self.models[role]
        if model.max_batch_size < 1:
            model.check()

        def predict(batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
            if not alive():
                raise CallCancelledError("the caller went away; segmentation stopped")
            return model.predict(batch)

        started = time.monotonic()
        label_map = segment(volume, model.spec, predict,
                            step_size=self.settings.step_size, mirror=self.settings.mirror,
                            batch_size=self.settings.batch_size,
                            workers=self.settings.concurrency,
                            postprocess_labels=self.settings.postprocess)
        log.info("segmented", extra=logs.fields(
            role=role, model=model.spec.name, version=model.spec.version,
            seconds=round(time.monotonic() - started, 2), found=_present(label_map)))
        return label_map


class HealthMonitor:
    """Keeps the health service SERVING only while Triton and every model are ready and match.

    A model is checked against its ``model.json`` until a check passes, then polled for
    readiness. State changes are logged with the reason.
    """

    def __init__(self, server: Server, models: Mapping[str, TritonModel],
                 interval: float) -> None:
        self.server, self.models, self.interval = server, models, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)
        self._problem: str | None = "starting"

    def poll(self) -> bool:
        """Check every model once; set the health status; True when all are ready."""
        problems = []
        for role, model in self.models.items():
            try:
                if model.max_batch_size < 1:
                    model.check()
                elif not model.ready():
                    raise ModelError("not ready", reason="triton-unavailable")
            except ModelError as exc:
                problems.append(f"{role}: {exc.reason}: {exc}")
        problem = "; ".join(problems) or None
        if problem != self._problem:
            if problem is None:
                log.info("all models ready; serving")
            else:
                log.warning("not serving: %s", problem)
        self._problem = problem
        self.server.set_serving(problem is None)
        return problem is None

    def _run(self) -> None:
        while True:
            self.poll()
            if self._stop.wait(self.interval):
                return

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
