"""The embedded Triton server: the real ``tritonserver`` binary of the ``nvidia-pytriton`` wheel.

The wheel (installed in ``.venv-triton``) holds ``pytriton/tritonserver/{bin,backends/python,
python_backend_stubs/<python>}`` and its shared libraries in ``nvidia_pytriton.libs``. Starting
it needs what pytriton itself does before it runs the binary:

* a backend directory holding ``python/`` with ``libtriton_python.so``, its utilities and the
  Python-backend stub built for the venv's Python version, as *copies*: Triton refuses backend
  libraries that resolve outside the backend directory, so symlinks fail;
* our ``onnxruntime/model.py`` (:file:`triton_backend/model.py`) beside it, which makes
  ``backend: "onnxruntime"`` a Python-based backend that runs the model's ONNX file;
* ``LD_LIBRARY_PATH`` with the venv interpreter's ``LIBDIR`` (the stub links ``libpython3.x``;
  the system's copy of another patch release fails with ``'_thread.RLock' object has no
  attribute '_recursion_count'``) and the wheel's ``nvidia_pytriton.libs``;
* the venv's ``bin/`` first on ``PATH``: the stub's embedded interpreter finds ``python3``
  there, reads ``pyvenv.cfg`` and so imports the venv's numpy and onnxruntime.

:func:`render_config` makes a model's ``config.pbtxt`` from its ``model.json``.
"""

from __future__ import annotations

import argparse
import ctypes
import filecmp
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import Field

from segmenter.spec import ModelSpec
from spinemets.config import Port, Section, load_section, read_raw
from spinemets.errors import ConfigError, ModelError, SpineMetsError

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
BACKEND_SOURCE = Path(__file__).resolve().parent / "triton_backend" / "model.py"
#: Name under which the Python-based backend is installed (the native ONNX Runtime backend's).
BACKEND_NAME = "onnxruntime"
#: Custom configuration the embedded server loads (``<model>/configs/cpu.pbtxt``) where a model
#: has one, as an imported model whose ``config.pbtxt`` asks for GPU instances; other models
#: are loaded with their ``config.pbtxt``.
EMBEDDED_CONFIG = "cpu"


class TritonSettings(Section):
    """Section ``triton``: the embedded server started by the local stack."""

    #: Model repository served (one folder per model: config.pbtxt, model.json, 1/model.onnx).
    model_repository: Path = REPO_ROOT / "triton-models"
    #: Virtualenv holding nvidia-pytriton and onnxruntime.
    venv: Path = REPO_ROOT / ".venv-triton"
    host: str = "127.0.0.1"
    http_port: Port = 8000
    grpc_port: Port = 8001
    metrics_port: Port = 8002
    #: Triton's verbose log level (0: info, warnings and errors only).
    log_verbose: int = Field(default=0, ge=0)
    #: Shared memory between Triton and each Python-backend stub: initial size and growth (MiB).
    shm_default_mib: int = Field(default=64, ge=1)
    shm_growth_mib: int = Field(default=64, ge=1)


@dataclass(frozen=True)
class TritonInstall:
    """Where the pytriton wheel put the server, and the venv interpreter it must run with."""

    venv: Path
    python_version: str
    python_libdir: Path
    site_packages: Path

    @classmethod
    def locate(cls, venv: Path) -> TritonInstall:
        """Ask the venv's interpreter; :class:`ConfigError` if the venv or the wheel is missing."""
        venv = venv.absolute()  # PATH must not hold a relative entry; keep the venv's symlinks
        python = venv / "bin" / "python"
        probe = ("import json, sys, sysconfig; print(json.dumps([f'{sys.version_info[0]}."
                 "{sys.version_info[1]}', sysconfig.get_config_var('LIBDIR'), "
                 "sysconfig.get_path('purelib')]))")
        try:
            out = subprocess.run([str(python), "-c", probe], check=True, capture_output=True,
                                 text=True, timeout=60).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise ConfigError(f"cannot run the Triton venv's interpreter {python}: {exc} "
                              "(run `make setup`)") from None
        version, libdir, purelib = json.loads(out)
        install = cls(venv, version, Path(libdir), Path(purelib))
        for path in (install.binary, install.stub, install.libs, install.python_backend):
            if not path.exists():
                raise ConfigError(f"{path} not found: is nvidia-pytriton installed in {venv}?")
        return install

    @property
    def server_dir(self) -> Path:
        return self.site_packages / "pytriton" / "tritonserver"

    @property
    def binary(self) -> Path:
        return self.server_dir / "bin" / "tritonserver"

    @property
    def libs(self) -> Path:
        return self.site_packages / "nvidia_pytriton.libs"

    @property
    def python_backend(self) -> Path:
        return self.server_dir / "backends" / "python"

    @property
    def stub(self) -> Path:
        return (self.server_dir / "python_backend_stubs" / self.python_version
                / "triton_python_backend_stub")

    def environment(self, base: dict[str, str]) -> dict[str, str]:
        """``base`` plus the library path and ``PATH`` the server and its stubs need."""
        libraries = [str(self.python_libdir), str(self.libs)]
        if base.get("LD_LIBRARY_PATH"):
            libraries.append(base["LD_LIBRARY_PATH"])
        return {**base, "LD_LIBRARY_PATH": os.pathsep.join(libraries),
                "PATH": os.pathsep.join([str(self.venv / "bin"), base.get("PATH", "")])}


def _copy(source: Path, target: Path) -> None:
    if not target.exists() or not filecmp.cmp(source, target):
        shutil.copy2(source, target)


def prepare_backends(install: TritonInstall, directory: Path) -> Path:
    """Fill ``directory`` as the server's backend directory (copies; see the module docstring)."""
    python = directory / "python"
    python.mkdir(parents=True, exist_ok=True)
    _copy(install.python_backend / "libtriton_python.so", python / "libtriton_python.so")
    _copy(install.python_backend / "triton_python_backend_utils.py",
          python / "triton_python_backend_utils.py")
    _copy(install.stub, python / "triton_python_backend_stub")
    onnx = directory / BACKEND_NAME
    onnx.mkdir(exist_ok=True)
    _copy(BACKEND_SOURCE, onnx / "model.py")
    return directory


def server_command(install: TritonInstall, settings: TritonSettings, backends: Path) -> list[str]:
    """The ``tritonserver`` command line: load every model at start, strict readiness."""
    mib = 1 << 20
    return [
        str(install.binary),
        f"--model-repository={settings.model_repository.resolve()}",
        f"--backend-directory={backends.resolve()}",
        "--model-control-mode=none",
        f"--model-config-name={EMBEDDED_CONFIG}",
        "--strict-readiness=true",
        "--exit-on-error=true",
        "--disable-auto-complete-config",
        f"--http-address={settings.host}", f"--http-port={settings.http_port}",
        f"--grpc-address={settings.host}", f"--grpc-port={settings.grpc_port}",
        f"--metrics-address={settings.host}", f"--metrics-port={settings.metrics_port}",
        "--allow-gpu-metrics=false",
        f"--log-verbose={settings.log_verbose}",
        "--exit-timeout-secs=10",
        # A prefix per server keeps two servers on one host off each other's shared memory.
        f"--backend-config=python,shm-region-prefix-name=spinemets{os.getpid()}_"
        f"{settings.grpc_port}_",
        f"--backend-config=python,shm-default-byte-size={settings.shm_default_mib * mib}",
        f"--backend-config=python,shm-growth-byte-size={settings.shm_growth_mib * mib}",
    ]


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the process that started it dies."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class TritonProcess:
    """A ``tritonserver`` child process: start, wait until it and its models are ready, stop.

    Its output goes to ``log_file`` (appended), or to this process's stdout/stderr. Start it from
    a thread that lives as long as the server: the server is terminated when that thread ends.
    """

    name = "triton"

    def __init__(self, settings: TritonSettings, *, log_file: Path | None = None) -> None:
        self.settings = settings
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._backends: tempfile.TemporaryDirectory[str] | None = None

    @property
    def grpc_url(self) -> str:
        return f"{self.settings.host}:{self.settings.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.http_port}"

    def start(self) -> None:
        install = TritonInstall.locate(self.settings.venv)
        if not self.settings.model_repository.is_dir():
            raise ConfigError(f"model repository {self.settings.model_repository} not found")
        self._backends = tempfile.TemporaryDirectory(prefix="spinemets-triton-")
        backends = prepare_backends(install, Path(self._backends.name))
        command = server_command(install, self.settings, backends)
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_file, "ab")  # noqa: SIM115 - closed in stop()
        log.info("starting tritonserver", extra={"fields": {"grpc": self.grpc_url,
                                                            "http": self.http_url}})
        self.process = subprocess.Popen(
            command, stdout=self._log, stderr=subprocess.STDOUT if self._log else None,
            env=install.environment(dict(os.environ)), preexec_fn=_die_with_parent)

    def ready(self) -> bool:
        """True when the server says it and every model are ready (``/v2/health/ready``)."""
        try:
            with urllib.request.urlopen(f"{self.http_url}/v2/health/ready", timeout=2) as reply:
                return bool(reply.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, timeout: float) -> None:
        """Block until ready; :class:`ModelError` if the server exits or takes too long."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise ModelError(f"tritonserver exited with code {code} before it was ready"
                                 f"{self._see_log()}", reason="triton-failed")
            if self.ready():
                return
            time.sleep(0.2)
        raise ModelError(f"tritonserver not ready after {timeout:.0f} s{self._see_log()}",
                         reason="triton-not-ready")

    def _see_log(self) -> str:
        return f"; see {self.log_file}" if self.log_file is not None else ""

    def stop(self, grace: float = 20.0) -> None:
        """SIGTERM (Triton finishes in-flight requests), SIGKILL after ``grace`` seconds."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(grace)
            except subprocess.TimeoutExpired:
                log.warning("tritonserver did not stop in %.0f s, killing it", grace)
                self.process.kill()
                self.process.wait()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._backends is not None:
            self._backends.cleanup()
            self._backends = None

    def __enter__(self) -> TritonProcess:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


# --- config.pbtxt from model.json -------------------------------------------------------------

def render_config(spec: ModelSpec, *, max_batch_size: int = 8, max_queue_delay_us: int = 2000,
                  instances: int = 1, kind: Literal["KIND_CPU", "KIND_GPU"] = "KIND_CPU",
                  intra_op_threads: int = 0,
                  tensorrt: Literal["FP32", "FP16"] | None = None) -> str:
    """The model's ``config.pbtxt``: names, dims and datatypes from ``spec``, dynamic batching.

    ``backend: "onnxruntime"`` is served by Triton's native ONNX Runtime backend and, in the
    embedded server, by this project's Python-based backend of the same name. The input is
    ``[N, 1, Z, Y, X]`` and the output ``[N, C, Z, Y, X]`` with ``N <= max_batch_size``.
    ``intra_op_threads`` 0 lets onnxruntime use every core. ``tensorrt`` (GPU instances only)
    adds the ONNX Runtime backend's TensorRT accelerator at that precision, engines cached.
    """
    if tensorrt is not None and kind != "KIND_GPU":
        raise ValueError("the TensorRT accelerator needs GPU instances (kind KIND_GPU)")
    dtype = {"FP32": "TYPE_FP32"}
    z, y, x = spec.patch_size_zyx

    def tensor(name: str, datatype: str, channels: int) -> str:
        return (f'  {{\n    name: "{name}"\n    data_type: {dtype[datatype]}\n'
                f"    dims: [ {channels}, {z}, {y}, {x} ]\n  }}")

    return "\n".join([
        f"# Generated from model.json by stack.triton.render_config ({spec.title}).",
        f'name: "{spec.name}"',
        f'backend: "{BACKEND_NAME}"',
        f"max_batch_size: {max_batch_size}",
        f"input [\n{tensor(spec.input.name, spec.input.datatype, 1)}\n]",
        f"output [\n{tensor(spec.output.name, spec.output.datatype, spec.num_channels)}\n]",
        f"dynamic_batching {{\n  max_queue_delay_microseconds: {max_queue_delay_us}\n}}",
        f"instance_group [\n  {{\n    count: {instances}\n    kind: {kind}\n  }}\n]",
        'parameters {\n  key: "intra_op_thread_count"\n'
        f'  value: {{ string_value: "{intra_op_threads}" }}\n}}',
        *([] if tensorrt is None else [_tensorrt(tensorrt)]),
        "",
    ])


def _tensorrt(precision: str) -> str:
    """The ONNX Runtime backend's TensorRT execution accelerator block (engines cached)."""
    parameters = [("precision_mode", precision), ("max_workspace_size_bytes", str(1 << 30)),
                  ("trt_engine_cache_enable", "1"), ("trt_engine_cache_path", "/tmp/trt-cache")]
    lines = "\n".join(f'      parameters {{ key: "{k}" value: "{v}" }}' for k, v in parameters)
    return ("optimization {\n  execution_accelerators {\n    gpu_execution_accelerator: [\n"
            f'    {{\n      name: "tensorrt"\n{lines}\n    }}\n    ]\n  }}\n}}')


def write_config(model_dir: Path, **options: Any) -> Path:
    """Write ``model_dir/config.pbtxt`` from ``model_dir/model.json``; see :func:`render_config`.

    Triton names a model after its folder, so the folder must carry the model's name.
    """
    spec = ModelSpec.load(model_dir / "model.json")
    if spec.name != model_dir.name:
        raise ModelError(f"model {spec.name!r} must live in a folder of that name, not "
                         f"{model_dir.name!r}", reason="bad-model-spec")
    path = model_dir / "config.pbtxt"
    path.write_text(render_config(spec, **options))
    return path


def main(argv: list[str] | None = None) -> int:
    """``python -m stack.triton serve|config``: run the embedded server, or write a config."""
    parser = argparse.ArgumentParser(prog="python -m stack.triton", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run tritonserver until SIGTERM or Ctrl-C")
    serve.add_argument("--model-repository", type=Path)
    serve.add_argument("--host", help="address to bind (0.0.0.0: every interface)")
    serve.add_argument("--http-port", type=int)
    serve.add_argument("--grpc-port", type=int)
    serve.add_argument("--metrics-port", type=int)
    config = commands.add_parser("config", help="write config.pbtxt from model.json")
    config.add_argument("model_dir", type=Path, nargs="+")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    try:
        if args.command == "config":
            for model_dir in args.model_dir:
                print(write_config(model_dir))
            return 0
        overrides = {k: v for k, v in vars(args).items()
                     if k in TritonSettings.model_fields and v is not None}
        settings = load_section(TritonSettings, "triton", read_raw())
        triton = TritonProcess(settings.model_copy(update=overrides))
        # Before the server starts: as a container's process 1, nothing else would stop on
        # SIGTERM. Leaving the block stops tritonserver (in-flight requests finish).
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        with triton:
            triton.wait_ready(300)
            print(f"tritonserver ready: grpc {triton.grpc_url}, http {triton.http_url}",
                  flush=True)
            assert triton.process is not None
            return triton.process.wait()
    except SpineMetsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
