"""A model served by Triton (KServe v2 over gRPC), checked against its ``model.json``.

Before use, :meth:`TritonModel.check` reads the served model's metadata and configuration and
compares input and output names, datatypes and shapes with the :class:`ModelSpec`, so a model
exported with another patch size or label count is refused instead of producing nonsense.
Every call carries a deadline. The client is thread-safe: :func:`segmenter.inference.segment`
keeps several batches in flight, which Triton's dynamic batcher groups.
"""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt
import tritonclient.grpc as triton
from tritonclient.utils import InferenceServerException

from segmenter.metrics import SegmenterMetrics
from segmenter.spec import ModelSpec
from spinemets.errors import ModelError

#: gRPC status of failures worth a retry (server down, overloaded or slow).
_TRANSIENT = ("StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED",
              "StatusCode.RESOURCE_EXHAUSTED")

_KEEPALIVE = triton.KeepAliveOptions(keepalive_time_ms=30_000, keepalive_timeout_ms=10_000,
                                     keepalive_permit_without_calls=True,
                                     http2_max_pings_without_data=0)


def _error(what: str, exc: InferenceServerException) -> ModelError:
    status = str(exc.status() or "")
    reason = "triton-unavailable" if status in _TRANSIENT or not status else "triton-error"
    return ModelError(f"{what}: {exc.message()} ({status or 'no status'})", reason=reason)


class TritonModel:
    """One model on one Triton server; ``predict`` runs a batch of patches."""

    def __init__(self, url: str, spec: ModelSpec, timeout: float,
                 metrics: SegmenterMetrics | None = None) -> None:
        self.url = url
        self.spec = spec
        self.timeout = timeout
        self.max_batch_size = 0
        self.metrics = metrics if metrics is not None else SegmenterMetrics()
        self.metrics.watch_model(spec.name)
        self._client = triton.InferenceServerClient(url, keepalive_options=_KEEPALIVE)

    def ready(self) -> bool:
        """True when the server and this model version are ready (never raises)."""
        try:
            return bool(self._client.is_server_ready(client_timeout=self.timeout)
                        and self._client.is_model_ready(self.spec.name, self.spec.version,
                                                        client_timeout=self.timeout))
        except InferenceServerException:
            return False

    def check(self) -> None:
        """Compare the served model with the spec; :class:`ModelError` says what differs."""
        spec = self.spec
        where = f"model {spec.name!r} version {spec.version} on {self.url}"
        try:
            if not self.ready():
                raise ModelError(f"{where} is not ready", reason="triton-unavailable")
            meta = self._client.get_model_metadata(spec.name, spec.version,
                                                   client_timeout=self.timeout)
            config = self._client.get_model_config(spec.name, spec.version,
                                                   client_timeout=self.timeout).config
        except InferenceServerException as exc:
            raise _error(f"cannot read {where}", exc) from None
        patch = list(spec.patch_size_zyx)
        expected = [
            ("input", meta.inputs, spec.input.name, spec.input.datatype, [-1, 1, *patch]),
            ("output", meta.outputs, spec.output.name, spec.output.datatype,
             [-1, spec.num_channels, *patch]),
        ]
        problems = []
        for kind, tensors, name, datatype, shape in expected:
            served = {t.name: t for t in tensors}
            if name not in served:
                problems.append(f"no {kind} named {name!r} (served: {sorted(served)})")
                continue
            if served[name].datatype != datatype:
                problems.append(f"{kind} {name!r} has datatype {served[name].datatype}, "
                                f"model.json says {datatype}")
            if list(served[name].shape) != shape:
                problems.append(f"{kind} {name!r} has shape {list(served[name].shape)}, "
                                f"model.json implies {shape}")
        if config.max_batch_size < 1:
            problems.append("max_batch_size is 0: the model has no batch axis")
        if problems:
            raise ModelError(f"{where} does not match model.json: " + "; ".join(problems),
                             reason="model-mismatch")
        self.max_batch_size = int(config.max_batch_size)

    def predict(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Logits ``[N, C, Z, Y, X]`` of patches ``[N, 1, Z, Y, X]`` (split at max_batch_size)."""
        if self.max_batch_size < 1:
            raise ModelError(f"model {self.spec.name!r} was not checked", reason="model-unchecked")
        parts = [self._infer(batch[i:i + self.max_batch_size])
                 for i in range(0, len(batch), self.max_batch_size)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _infer(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        name = self.spec.name
        data = triton.InferInput(self.spec.input.name, list(batch.shape), self.spec.input.datatype)
        data.set_data_from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        started = time.monotonic()
        try:
            result = self._client.infer(
                name, [data], model_version=self.spec.version,
                outputs=[triton.InferRequestedOutput(self.spec.output.name)],
                client_timeout=self.timeout)
        except InferenceServerException as exc:
            error = _error(f"inference of {name!r} on {self.url} failed", exc)
            self.metrics.triton_errors.labels(model=name, reason=error.reason).inc()
            raise error from None
        finally:
            self.metrics.triton_seconds.labels(model=name).observe(time.monotonic() - started)
        logits = result.as_numpy(self.spec.output.name)
        if logits is None:
            self.metrics.triton_errors.labels(model=name, reason="bad-model-output").inc()
            raise ModelError(f"{name!r} returned no {self.spec.output.name!r}",
                             reason="bad-model-output")
        self.metrics.patches.labels(model=name).inc(len(batch))
        return np.asarray(logits, dtype=np.float32)

    def close(self) -> None:
        self._client.close()
