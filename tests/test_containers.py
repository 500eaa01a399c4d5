"""The whole stack in containers, as Kubernetes runs it, with podman on one machine.

Each service runs from its own image in its own container, with the embedded Triton
(``spinemets/triton-cpu``) and a mock PACS, on one podman network where they find each other by
the names of the Kubernetes Services (``listener``, ``triton``, ...). The configuration is the
Kubernetes one, ``k8s/base/spinemets.yaml``, mounted read-only at ``/etc/spinemets``, with the
site's values as ``SPINEMETS__...`` variables; the model repository is copied from
``spinemets/models`` into a volume as the pods' init containers do; every container runs as the
image's user with a read-only root filesystem. A phantom is pushed from the host with dcmtk
``storescu`` to the listener's published DICOM port, and the SEG and SR must arrive at the mock
PACS, referencing the pushed study.

Missing images are built first (``containers/build.sh``); ``make test-containers`` builds them
all (``make images``) and runs this file. Skipped where podman is not installed.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import shlex
import shutil
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from e2e import RESULT_MODALITIES
from phantom import PhantomOptions, generate, write_dicom_series
from spinemets.grpcutil import wait_healthy
from stack.sender import push

REPO = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
IMAGES = ("listener", "segmenter", "registrar", "risk", "triton-cpu", "models")
PODMAN = shutil.which("podman")
#: Global podman options (as containers/build.sh: ENGINE_FLAGS) and those of every container.
PODMAN_FLAGS = shlex.split(os.environ.get("ENGINE_FLAGS", "--runtime runc"))
RUN_FLAGS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]
#: The images' user (k8s/base: runAsUser, runAsGroup).
USER = "10001:10001"
SENDER_AE = "STORESCU"
SEG_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
COMPREHENSIVE_3D_SR = "1.2.840.10008.5.1.4.1.1.88.34"
STARTUP_TIMEOUT_S = 300.0
RESULT_TIMEOUT_S = 900.0

pytestmark = [
    pytest.mark.containers,
    pytest.mark.skipif(PODMAN is None, reason="podman is not installed (make images installs it)"),
]


def image(name: str) -> str:
    return f"localhost/spinemets/{name}:{VERSION}"


def podman(*args: str, timeout: float = 300.0, check: bool = True) -> str:
    """Run podman; its stdout. A failure names the command and quotes its stderr."""
    assert PODMAN is not None
    command = [PODMAN, *PODMAN_FLAGS, *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{shlex.join(command)} failed ({result.returncode}):\n"
                             f"{result.stderr.strip()[-3000:]}")
    return result.stdout


@pytest.fixture(scope="session")
def images() -> None:
    """Every image of this version; the missing ones are built (a cold build takes minutes)."""
    missing = [name for name in IMAGES
               if subprocess.run([str(PODMAN), "image", "exists", image(name)],
                                 check=False).returncode != 0]
    if missing:
        result = subprocess.run([str(REPO / "containers/build.sh"), *missing], cwd=REPO,
                                capture_output=True, text=True, timeout=3600, check=False)
        assert result.returncode == 0, (f"containers/build.sh {' '.join(missing)} failed:\n"
                                        f"{(result.stdout + result.stderr)[-5000:]}")


@dataclass
class ContainerStack:
    """Containers on one network, named ``<prefix>-<name>`` and reachable there as ``<name>``."""

    prefix: str
    root: Path
    env: dict[str, str]
    containers: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)

    @property
    def network(self) -> str:
        return self.prefix

    def start(self) -> None:
        podman("network", "create", self.network)

    def volume(self, name: str) -> str:
        volume = f"{self.prefix}-{name}"
        podman("volume", "create", volume)
        self.volumes.append(volume)
        return volume

    def run(self, name: str, image_ref: str, *args: str, options: Sequence[str] = (),
            publish: Sequence[int] = ()) -> str:
        """Start a detached container: read-only root filesystem (podman adds a tmpfs at /tmp),
        a volume of its own for its state, the configuration and the site's environment."""
        container = f"{self.prefix}-{name}"
        data = self.volume(f"{name}-data")
        self.containers.append(container)
        command = ["run", "--detach", "--name", container, "--network", self.network,
                   "--network-alias", name, *RUN_FLAGS, "--read-only",
                   "--volume", f"{data}:/var/lib/spinemets",
                   "--volume", f"{self.root / 'config'}:/etc/spinemets:ro"]
        for key, value in self.env.items():
            command += ["--env", f"{key}={value}"]
        for port in publish:
            command += ["--publish", f"127.0.0.1::{port}"]
        podman(*command, *options, image_ref, *args)
        return container

    def host_port(self, name: str, port: int) -> int:
        """The loopback port where the container's ``port`` is published."""
        binding = podman("port", f"{self.prefix}-{name}", f"{port}/tcp").strip().splitlines()[0]
        return int(binding.rsplit(":", 1)[1])

    def running(self, name: str) -> bool:
        state = podman("inspect", "--format", "{{.State.Status}}", f"{self.prefix}-{name}",
                       check=False)
        return state.strip() == "running"

    def logs(self, lines: int = 40) -> str:
        """The last lines of every container's output, for failure messages."""
        parts = []
        for container in self.containers:
            result = subprocess.run([str(PODMAN), *PODMAN_FLAGS, "logs", "--tail", str(lines),
                                     container], capture_output=True, text=True, check=False)
            parts.append(f"--- {container}\n{(result.stdout + result.stderr).rstrip()}")
        return "\n".join(parts)

    def save_logs(self) -> None:
        folder = self.root / "logs"
        folder.mkdir(exist_ok=True)
        for container in self.containers:
            result = subprocess.run([str(PODMAN), *PODMAN_FLAGS, "logs", container],
                                    capture_output=True, text=True, check=False)
            (folder / f"{container}.log").write_text(result.stdout + result.stderr)

    def wait(self, name: str, ready: str, check: Callable[[], bool], timeout: float) -> None:
        """Poll ``check()`` until true; fail at once, with the logs, if the container stops."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running(name):
                raise AssertionError(f"container {name} stopped before {ready}:\n{self.logs()}")
            if check():
                return
            time.sleep(1.0)
        raise AssertionError(f"{name} not {ready} after {timeout:.0f} s:\n{self.logs()}")

    def stop(self) -> None:
        self.save_logs()
        if self.containers:
            podman("rm", "--force", "--time", "5", *reversed(self.containers), check=False,
                   timeout=120)
        podman("network", "rm", "--force", self.network, check=False)
        if self.volumes:
            podman("volume", "rm", "--force", *self.volumes, check=False)


def http_ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def site_environment() -> dict[str, str]:
    """What a site's overlay and Secret add to k8s/base/spinemets.yaml (docs/deployment.md)."""
    return {
        "SPINEMETS__COMMON__PSEUDONYM_KEY": secrets.token_urlsafe(24),
        "SPINEMETS__LISTENER__ALLOWED_CALLERS": f"[{{ae_title: {SENDER_AE}}}]",
        "SPINEMETS__LISTENER__COMPLETION_IDLE_S": "2",
        "SPINEMETS__LISTENER__RETRY": "{max_attempts: 20, base_delay_s: 0.5, max_delay_s: 5.0}",
        "SPINEMETS__RISK__DESTINATIONS": "[{ae_title: PACS, host: pacs, port: 11113}]",
    }


@dataclass(frozen=True)
class Running:
    stack: ContainerStack
    dicom_port: int
    pacs: Path


@pytest.fixture(scope="module")
def containers(images: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """Triton, the four services and the mock PACS, each in its own container, healthy."""
    root = tmp_path_factory.mktemp("containers")
    config = root / "config"
    config.mkdir(mode=0o755)
    shutil.copy(REPO / "k8s/base/spinemets.yaml", config / "spinemets.yaml")
    (config / "spinemets.yaml").chmod(0o644)
    pacs = root / "pacs"
    pacs.mkdir()
    pacs.chmod(0o777)  # written by the mock PACS as the image's user
    stack = ContainerStack(f"spinemets-test-{secrets.token_hex(4)}", root, site_environment())
    stack.start()
    try:
        # The pods' init container: the model repository from the model image into a volume.
        models = stack.volume("models")
        podman("run", "--rm", *RUN_FLAGS, "--volume", f"{models}:/work/models", image("models"),
               "cp", "-R", "/models/.", "/work/models/")
        # The mock PACS (tools/stack/mock_pacs.py) on the risk image, which has pynetdicom.
        stack.run("pacs", image("risk"), "/opt/pacs/mock_pacs.py", "--root", "/pacs",
                  "--host", "0.0.0.0", "--port", "11113",
                  options=["--entrypoint", "python",
                           "--volume", f"{REPO / 'tools/stack/mock_pacs.py'}:/opt/pacs/"
                                       "mock_pacs.py:ro",
                           "--volume", f"{pacs}:/pacs"])
        stack.run("triton", image("triton-cpu"), publish=[8000],
                  options=["--shm-size", "1g", "--volume", f"{models}:/models:ro"])
        ready = f"http://127.0.0.1:{stack.host_port('triton', 8000)}/v2/health/ready"
        stack.wait("triton", "ready", lambda: http_ready(ready), STARTUP_TIMEOUT_S)
        grpc_ports = {"registrar": 50053, "risk": 50054, "segmenter": 50052, "listener": 50051}
        for name, port in grpc_ports.items():  # every service after those it calls
            options = ["--volume", f"{models}:/models:ro"] if name == "segmenter" else []
            publish = [port, 11112] if name == "listener" else [port]
            stack.run(name, image(name), publish=publish, options=options)
            address = f"127.0.0.1:{stack.host_port(name, port)}"
            stack.wait(name, "healthy", functools.partial(wait_healthy, address, timeout=1.0),
                       STARTUP_TIMEOUT_S)
        yield Running(stack, stack.host_port("listener", 11112), pacs)
    finally:
        stack.stop()


def test_images_run_as_non_root_without_configuration() -> None:
    """Every image runs as uid/gid 10001 and carries no configuration or secret of a site."""
    if any(subprocess.run([str(PODMAN), "image", "exists", image(name)],
                          check=False).returncode for name in IMAGES):
        pytest.skip("images not built (make images)")
    for name in IMAGES:
        config = json.loads(podman("image", "inspect", "--format", "{{json .Config}}",
                                   image(name)))
        assert config.get("User") == USER, name
        env = dict(item.split("=", 1) for item in config.get("Env") or [])
        assert not any("PSEUDONYM" in key or "DESTINATIONS" in key for key in env), name


def wait_for_results(running: Running, timeout: float) -> dict[str, Path]:
    """One object of each result modality the mock PACS received (SEG, SR, and the report's
    PDF and secondary capture); fails early if a container stops."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(any((running.pacs / m).glob("*.dcm")) for m in RESULT_MODALITIES):
            time.sleep(1.0)  # a second object of any kind would arrive together with these
            found = {m: sorted((running.pacs / m).glob("*.dcm")) for m in RESULT_MODALITIES}
            assert all(len(paths) == 1 for paths in found.values()), found
            return {m: paths[0] for m, paths in found.items()}
        for container in ("listener", "segmenter", "registrar", "risk", "triton", "pacs"):
            if not running.stack.running(container):
                raise AssertionError(f"container {container} stopped:\n{running.stack.logs()}")
        time.sleep(2.0)
    raise AssertionError(f"not every one of {', '.join(RESULT_MODALITIES)} at the mock PACS after "
                         f"{timeout:.0f} s:\n{running.stack.logs()}")


def referenced_sop_instances(sr: Dataset) -> set[str]:
    """SOP Instance UIDs in the SR's evidence sequences."""
    uids = set()
    for sequence in ("CurrentRequestedProcedureEvidenceSequence",
                     "PertinentOtherEvidenceSequence"):
        for study in sr.get(sequence, []):
            for series in study.get("ReferencedSeriesSequence", []):
                uids |= {str(item.ReferencedSOPInstanceUID)
                         for item in series.get("ReferencedSOPSequence", [])}
    return uids


def test_phantom_through_the_stack_in_containers(containers: Running,
                                                 tmp_path: Path) -> None:
    phantom = generate(PhantomOptions(seed=3107, levels=("T9", "L3"), spacing=(1.0, 1.0, 2.5),
                                      matrix=256))
    files = write_dicom_series(phantom, tmp_path / "phantom", patient_id="P-CONTAINERS",
                               patient_name="Test^Containers")
    ct = pydicom.dcmread(files[0], stop_before_pixels=True)
    push(files[0].parent, "127.0.0.1", containers.dicom_port, "SPINEMETS", SENDER_AE)

    results = {m: pydicom.dcmread(p) for m, p in
               wait_for_results(containers, RESULT_TIMEOUT_S).items()}
    seg, sr = results["SEG"], results["SR"]
    assert seg.SOPClassUID == SEG_STORAGE
    assert sr.SOPClassUID == COMPREHENSIVE_3D_SR
    # the report was drawn inside the risk container (read-only root, matplotlib's cache in /tmp)
    assert bytes(results["DOC"].EncapsulatedDocument).startswith(b"%PDF")
    assert results["OT"].SamplesPerPixel == 3
    for result in results.values():
        assert result.StudyInstanceUID == ct.StudyInstanceUID
        assert result.PatientID == ct.PatientID
    assert [str(s.SeriesInstanceUID) for s in seg.ReferencedSeriesSequence] == \
        [str(ct.SeriesInstanceUID)]
    assert len(seg.SegmentSequence) >= 1
    assert seg.SOPInstanceUID in referenced_sop_instances(sr)
    pushed = {str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    assert {str(item.ReferencedSOPInstanceUID)
            for item in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence} == pushed
