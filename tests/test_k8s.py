"""The Kubernetes manifests (k8s/): every overlay renders with ``kubectl kustomize``, validates
strictly against the API schemas of two Kubernetes versions, meets the deployment policy (requests,
limits, probes, non-root, pinned images, NetworkPolicies), lets traffic flow exactly along the
system's arrows, and agrees with the services' own configuration models.
"""

from __future__ import annotations

import copy
import functools
import re
import shutil
import subprocess
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel

from listener.settings import Settings as ListenerSettings
from registrar.settings import Settings as RegistrarSettings
from risk.settings import Settings as RiskSettings
from segmenter.settings import Settings as SegmenterSettings
from spinemets.config import CommonSettings, load_section, read_raw
from spinemets.errors import ConfigError
from stack.triton import TritonSettings

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "k8s"
#: What a site deploys: the two overlays, and the example site overlay with both components.
TARGETS = {"cpu": K8S / "overlays/cpu", "gpu": K8S / "overlays/gpu",
           "site": K8S / "examples/site"}
KUBERNETES_VERSIONS = ("1.33.0", "1.37.0")
#: Kinds of the Prometheus Operator (CRDs): no schema in kubernetes-validate.
CRD_KINDS = {"PodMonitor"}
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet")
SERVICES: dict[str, type[BaseModel]] = {
    "listener": ListenerSettings, "segmenter": SegmenterSettings,
    "registrar": RegistrarSettings, "risk": RiskSettings}
#: The arrows of docs/architecture.md: (from, to, port). Nothing else may flow between pods.
EXPECTED_EDGES = {
    ("listener", "segmenter", 50052), ("listener", "registrar", 50053),
    ("listener", "risk", 50054), ("segmenter", "listener", 50051),
    ("risk", "listener", 50051), ("segmenter", "triton", 8001),
}

Doc = dict[str, Any]
KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(
    KUBECTL is None, reason="kubectl not on PATH (kubectl >= 1.27, kustomize v5, renders k8s/)")


@functools.cache
def render(target: str) -> tuple[Doc, ...]:
    """The manifests ``kubectl kustomize`` renders for ``target``."""
    assert KUBECTL is not None
    run = subprocess.run([KUBECTL, "kustomize", str(TARGETS[target])], capture_output=True,
                         text=True, timeout=120, check=False)
    assert run.returncode == 0, f"kubectl kustomize {TARGETS[target]} failed:\n{run.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(run.stdout) if doc)


def rendered(target: str) -> list[Doc]:
    """A private copy of the rendering, free to mutate."""
    return copy.deepcopy(list(render(target)))


def find(docs: list[Doc] | tuple[Doc, ...], kind: str, name: str | None = None) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind and name in (None, d["metadata"]["name"])]


def one(docs: list[Doc] | tuple[Doc, ...], kind: str, name: str) -> Doc:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def workloads(docs: list[Doc] | tuple[Doc, ...]) -> Iterator[Doc]:
    return (d for d in docs if d["kind"] in WORKLOADS)


def pod(doc: Doc) -> Doc:
    return doc["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def main_container(doc: Doc) -> Doc:
    """The container named after its workload."""
    return next(c for c in pod(doc)["containers"] if c["name"] == doc["metadata"]["name"])


def ports_by_name(container: Doc) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container.get("ports", [])}


# --- label selectors and network policies ---------------------------------------------------

def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels and matchExpressions)."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expr in selector.get("matchExpressions", []):
        key, values = expr["key"], expr.get("values", [])
        ok = {"In": key in labels and labels[key] in values,
              "NotIn": labels.get(key) not in values,
              "Exists": key in labels,
              "DoesNotExist": key not in labels}[expr["operator"]]
        if not ok:
            return False
    return True


@dataclass(frozen=True)
class Endpoint:
    """A pod (namespace and labels), or, with namespace ``None``, an address outside the cluster."""

    namespace: str | None
    labels: Mapping[str, str] = field(default_factory=dict)


OUTSIDE = Endpoint(None)
KUBE_DNS = Endpoint("kube-system", {"k8s-app": "kube-dns"})
PROMETHEUS = Endpoint("monitoring", {"app.kubernetes.io/name": "prometheus"})


class Network:
    """What the NetworkPolicies of a rendering let through (one TCP/UDP port at a time)."""

    def __init__(self, docs: list[Doc] | tuple[Doc, ...]) -> None:
        self.policies = find(docs, "NetworkPolicy")
        self.namespace_labels = {d["metadata"]["name"]: d["metadata"].get("labels", {})
                                 for d in find(docs, "Namespace")}

    def _ns_labels(self, namespace: str) -> dict[str, str]:
        return {**self.namespace_labels.get(namespace, {}),
                "kubernetes.io/metadata.name": namespace}

    def _peer(self, peer: Doc, other: Endpoint, namespace: str) -> bool:
        if "ipBlock" in peer:
            return other.namespace is None
        if other.namespace is None:
            return False
        if "namespaceSelector" in peer:
            if not selects(peer["namespaceSelector"], self._ns_labels(other.namespace)):
                return False
        elif other.namespace != namespace:
            return False
        return selects(peer.get("podSelector", {}), other.labels)

    def _admits(self, direction: str, subject: Endpoint, other: Endpoint, port: int,
                protocol: str) -> bool:
        kind, peers_key = {"Ingress": ("ingress", "from"), "Egress": ("egress", "to")}[direction]
        selecting = [p["spec"] for p in self.policies
                     if p["metadata"].get("namespace") == subject.namespace
                     and direction in p["spec"].get("policyTypes", ["Ingress"])
                     and selects(p["spec"]["podSelector"], subject.labels)]
        if not selecting:
            return True  # not isolated in this direction
        assert subject.namespace is not None
        for spec in selecting:
            for rule in spec.get(kind, []):
                ports = rule.get("ports")
                if ports and not any(p.get("port") == port and p.get("protocol", "TCP") == protocol
                                     for p in ports):
                    continue
                peers = rule.get(peers_key)
                if not peers or any(self._peer(p, other, subject.namespace) for p in peers):
                    return True
        return False

    def reachable(self, source: Endpoint, target: Endpoint, port: int,
                  protocol: str = "TCP") -> bool:
        """Egress of the source (if a pod) and ingress of the target (if a pod) both allow it."""
        return ((source.namespace is None
                 or self._admits("Egress", source, target, port, protocol))
                and (target.namespace is None
                     or self._admits("Ingress", target, source, port, protocol)))


def endpoint(doc: Doc) -> Endpoint:
    return Endpoint(doc["metadata"]["namespace"], doc["spec"]["template"]["metadata"]["labels"])


# --- the policy ---------------------------------------------------------------------------

def _image_violation(image: str) -> str | None:
    if "@sha256:" in image:
        return None
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:
        return f"image {image} has no tag"
    if tag == "latest":
        return f"image {image} uses the tag latest"
    return None


def _container_violations(pod_spec: Doc, c: Doc, init: bool) -> list[str]:
    found = []
    resources = c.get("resources", {})
    for part in ("requests", "limits"):
        missing = {"cpu", "memory"} - set(resources.get(part, {}))
        if missing:
            found.append(f"no {part} for {', '.join(sorted(missing))}")
    if not init:
        found += [f"no {probe}" for probe in ("readinessProbe", "livenessProbe") if probe not in c]
    if (problem := _image_violation(c.get("image", ""))) is not None:
        found.append(problem)
    pod_sc, sc = pod_spec.get("securityContext", {}), c.get("securityContext", {})
    if not sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot", False)):
        found.append("may run as root (runAsNonRoot not true)")
    if sc.get("runAsUser", pod_sc.get("runAsUser")) == 0:
        found.append("runs as user 0")
    if sc.get("allowPrivilegeEscalation", True):
        found.append("allows privilege escalation")
    if "ALL" not in sc.get("capabilities", {}).get("drop", []):
        found.append("does not drop all capabilities")
    if not sc.get("readOnlyRootFilesystem", False):
        found.append("root filesystem is writable")
    seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {}))
    if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
        found.append("no seccomp profile")
    return found


def policy_violations(docs: list[Doc] | tuple[Doc, ...]) -> list[str]:
    """Every breach of the deployment policy, as ``kind/name container: problem``."""
    found = []
    policies = find(docs, "NetworkPolicy")
    for doc in workloads(docs):
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        spec = pod(doc)
        for init, key in ((False, "containers"), (True, "initContainers")):
            for c in spec.get(key, []):
                found += [f"{where} {c['name']}: {v}"
                          for v in _container_violations(spec, c, init)]
        labels = doc["spec"]["template"]["metadata"]["labels"]
        own = [p for p in policies
               if p["metadata"].get("namespace") == doc["metadata"].get("namespace")
               and p["spec"]["podSelector"] and selects(p["spec"]["podSelector"], labels)
               and {"Ingress", "Egress"} <= set(p["spec"].get("policyTypes", []))]
        if not own:
            found.append(f"{where}: no NetworkPolicy of its own (Ingress and Egress) selects it")
    return found


# --- tests ----------------------------------------------------------------------------------

def test_kustomize_is_v5_or_later() -> None:
    """The manifests use kustomize v5 features (labels with includeTemplates, components)."""
    assert KUBECTL is not None
    out = subprocess.run([KUBECTL, "version", "--client"], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    match = re.search(r"Kustomize Version: v(\d+)", out)
    assert match and int(match.group(1)) >= 5, f"kubectl's kustomize is too old:\n{out}"


@pytest.mark.parametrize("target", TARGETS)
def test_renders_every_component(target: str) -> None:
    docs = render(target)
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("StatefulSet", "listener") in kinds
    for name in ("segmenter", "registrar", "risk", "triton"):
        assert ("Deployment", name) in kinds and ("Service", name) in kinds
    assert ("HorizontalPodAutoscaler", "segmenter") in kinds
    assert all(d["metadata"].get("namespace") == "spinemets"
               for d in docs if d["kind"] != "Namespace"), "a resource outside the namespace"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("target", TARGETS)
def test_validates_against_kubernetes_schemas(target: str, version: str) -> None:
    unchecked = set()
    for doc in render(target):
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            unchecked.add(doc["kind"])
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            pytest.fail(f"{where} is invalid for Kubernetes {version}: {path}: {exc.message}")
    assert unchecked <= CRD_KINDS, f"kinds without a schema: {unchecked - CRD_KINDS}"


def test_strict_validation_rejects_an_unknown_field() -> None:
    doc = one(rendered("cpu"), "Deployment", "segmenter")
    main_container(doc)["resource"] = main_container(doc).pop("resources")  # a typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, KUBERNETES_VERSIONS[-1], strict=True)


@pytest.mark.parametrize("target", TARGETS)
def test_meets_the_deployment_policy(target: str) -> None:
    assert policy_violations(render(target)) == []


def _drop_limits(docs: list[Doc]) -> None:
    del main_container(one(docs, "Deployment", "segmenter"))["resources"]["limits"]


def _drop_probe(docs: list[Doc]) -> None:
    del main_container(one(docs, "Deployment", "registrar"))["livenessProbe"]


def _latest(docs: list[Doc]) -> None:
    main_container(one(docs, "Deployment", "risk"))["image"] = "spinemets/risk:latest"


def _root(docs: list[Doc]) -> None:
    c = pod(one(docs, "Deployment", "triton"))["initContainers"][0]
    c["securityContext"]["runAsNonRoot"] = False
    c["securityContext"]["runAsUser"] = 0


def _writable(docs: list[Doc]) -> None:
    main_container(one(docs, "StatefulSet", "listener"))["securityContext"][
        "readOnlyRootFilesystem"] = False


def _unpoliced(docs: list[Doc]) -> None:
    docs.remove(one(docs, "NetworkPolicy", "registrar"))


@pytest.mark.parametrize(("mutate", "expected"), [
    (_drop_limits, "Deployment/segmenter segmenter: no limits for cpu, memory"),
    (_drop_probe, "Deployment/registrar registrar: no livenessProbe"),
    (_latest, "Deployment/risk risk: image spinemets/risk:latest uses the tag latest"),
    (_root, "Deployment/triton models: may run as root (runAsNonRoot not true)"),
    (_writable, "StatefulSet/listener listener: root filesystem is writable"),
    (_unpoliced, "Deployment/registrar: no NetworkPolicy of its own (Ingress and Egress) "
                 "selects it"),
])
def test_policy_catches_a_violation(mutate: Callable[[list[Doc]], None], expected: str) -> None:
    docs = rendered("cpu")
    mutate(docs)
    assert expected in policy_violations(docs)


@pytest.mark.parametrize("target", TARGETS)
def test_traffic_flows_only_along_the_arrows(target: str) -> None:
    docs = render(target)
    net = Network(docs)
    pods = {d["metadata"]["name"]: d for d in workloads(docs)}
    probe_ports = {p for d in pods.values() for c in pod(d)["containers"]
                   for p in ports_by_name(c).values()} | {104, 443, 2762, 11112}
    edges = {(src, dst, port) for src in pods for dst in pods if src != dst
             for port in probe_ports
             if net.reachable(endpoint(pods[src]), endpoint(pods[dst]), port)
             and port in ports_by_name(main_container(pods[dst])).values()}
    assert edges == EXPECTED_EDGES
    # From outside: only the listener's DICOM ports (plain, and TLS where the sidecar runs).
    inbound = {(name, port) for name, d in pods.items() for port in probe_ports
               if net.reachable(OUTSIDE, endpoint(d), port)}
    dicom_ports = {p for c in pod(pods["listener"])["containers"]
                   for n, p in ports_by_name(c).items() if n.startswith("dicom")}
    assert inbound == {("listener", p) for p in dicom_ports}
    # Out of the cluster: only the risk service (C-STORE to the PACS).
    outbound = {name for name, d in pods.items() for port in probe_ports
                if net.reachable(endpoint(d), OUTSIDE, port)}
    assert outbound == {"risk"}
    assert {n for n, d in pods.items() if net.reachable(endpoint(d), KUBE_DNS, 53, "UDP")} == {
        "listener", "segmenter", "risk"}
    for name, d in pods.items():
        metrics = ports_by_name(main_container(d))["metrics"]
        assert net.reachable(PROMETHEUS, endpoint(d), metrics), f"Prometheus cannot scrape {name}"


@pytest.mark.parametrize("target", TARGETS)
def test_listener_keeps_its_state_and_is_the_only_exposed_service(target: str) -> None:
    docs = render(target)
    listener = one(docs, "StatefulSet", "listener")
    assert listener["spec"]["replicas"] == 1, "the job database is SQLite: one writer"
    claims = {t["metadata"]["name"] for t in listener["spec"]["volumeClaimTemplates"]}
    mounts = {m["name"]: m["mountPath"] for m in main_container(listener)["volumeMounts"]}
    assert "data" in claims and mounts["data"] == "/var/lib/spinemets"
    assert listener["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain", "whenScaled": "Retain"}
    exposed = [s for s in find(docs, "Service") if s["spec"].get("type") not in (None, "ClusterIP")]
    assert [s["metadata"]["name"] for s in exposed] == ["listener-dicom"]
    (dicom,) = exposed
    assert selects({"matchLabels": dicom["spec"]["selector"]},
                   listener["spec"]["template"]["metadata"]["labels"])
    assert dicom["spec"]["externalTrafficPolicy"] == "Local", "the sender's address is checked"
    container_ports = {n for c in pod(listener)["containers"] for n in ports_by_name(c)}
    assert {p["targetPort"] for p in dicom["spec"]["ports"]} <= container_ports
    for name in ("registrar", "risk"):  # their SQLite history and outbox survive restarts
        deployment = one(docs, "Deployment", name)
        assert deployment["spec"]["strategy"]["type"] == "Recreate"
        claim = next(v["persistentVolumeClaim"]["claimName"] for v in pod(deployment)["volumes"]
                     if "persistentVolumeClaim" in v)
        one(docs, "PersistentVolumeClaim", claim)


@pytest.mark.parametrize("target", TARGETS)
def test_triton_and_segmenter_share_the_model_image(target: str) -> None:
    docs = render(target)
    triton = one(docs, "Deployment", "triton")
    server = main_container(triton)
    gpus = server["resources"]["limits"].get("nvidia.com/gpu")
    if target == "cpu":
        assert gpus is None and server["image"].split(":")[0].endswith("spinemets/triton-cpu")
    else:
        assert gpus == "1" and server["resources"]["requests"]["nvidia.com/gpu"] == "1"
        assert re.search(r"nvidia/tritonserver:\d\d\.\d\d-py3$", server["image"])
        assert "--model-repository=/models" in server["args"]
    probes = {p: server[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")}
    assert probes == {"readinessProbe": "/v2/health/ready", "livenessProbe": "/v2/health/live"}
    segmenter = one(docs, "Deployment", "segmenter")
    images = {pod(d)["initContainers"][0]["image"] for d in (triton, segmenter)}
    assert len(images) == 1, f"Triton and the segmenter load different models: {images}"
    assert one(docs, "HorizontalPodAutoscaler", "segmenter")["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1", "kind": "Deployment", "name": "segmenter"}
    for name in ("segmenter", "triton"):
        budget = one(docs, "PodDisruptionBudget", name)
        assert selects(budget["spec"]["selector"], endpoint(one(docs, "Deployment", name)).labels)


@pytest.mark.parametrize("target", TARGETS)
def test_images_carry_the_project_version(target: str) -> None:
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    for doc in workloads(render(target)):
        for c in pod(doc)["containers"] + pod(doc).get("initContainers", []):
            if "spinemets/" in c["image"]:
                assert c["image"].endswith(f":{version}"), c["image"]


@pytest.mark.parametrize("target", TARGETS)
def test_prometheus_scrapes_every_pod(target: str) -> None:
    docs = render(target)
    for doc in workloads(docs):
        annotations = doc["spec"]["template"]["metadata"].get("annotations", {})
        port = ports_by_name(main_container(doc))["metrics"]
        assert annotations.get("prometheus.io/scrape") == "true"
        assert annotations.get("prometheus.io/port") == str(port)
    for monitor in find(docs, "PodMonitor"):
        assert all(selects(monitor["spec"]["selector"], endpoint(d).labels)
                   for d in workloads(docs))
        assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["metrics"]


def _site_environment(target: str) -> dict[str, str]:
    """The SPINEMETS__ variables of the ConfigMap spinemets-site in ``target``."""
    docs = render(target)
    (site,) = [d for d in find(docs, "ConfigMap")
               if d["metadata"]["name"].startswith("spinemets-site")]
    return dict(site.get("data", {}))


def _configuration(target: str, tmp_path: Path) -> dict[str, Any]:
    """The raw configuration every pod reads: the ConfigMap's file plus the site variables."""
    (config,) = [d for d in find(render(target), "ConfigMap")
                 if d["metadata"]["name"].startswith("spinemets-config")]
    path = tmp_path / "spinemets.yaml"
    path.write_text(config["data"]["spinemets.yaml"])
    return read_raw(path, _site_environment(target))


def test_site_configuration_is_valid_and_matches_the_manifests(tmp_path: Path) -> None:
    """The example site's configuration passes every service's validation, and each port and
    address in it is a container port or a Service of the rendering."""
    docs = render("site")
    raw = _configuration("site", tmp_path)
    load_section(CommonSettings, "common", raw)
    settings: dict[str, BaseModel] = {
        name: load_section(model, name, raw) for name, model in SERVICES.items()}
    for name, section in settings.items():
        workload = next(d for d in workloads(docs) if d["metadata"]["name"] == name)
        ports = ports_by_name(main_container(workload))
        values = section.model_dump()
        assert ports["grpc"] == values["grpc_port"], name
        assert ports["metrics"] == values["metrics_port"], name
    listener = settings["listener"].model_dump()
    assert ports_by_name(main_container(one(docs, "StatefulSet", "listener")))["dicom"] == (
        listener["port"])
    addresses = [listener["advertise_address"], listener["segmenter"], listener["registrar"],
                 listener["risk"], settings["segmenter"].model_dump()["triton_url"]]
    for address in addresses:
        host, port = address.rsplit(":", 1)
        service = one(docs, "Service", host)
        (entry,) = [p for p in service["spec"]["ports"] if p["port"] == int(port)]
        backend = next(d for d in workloads(docs)
                       if selects({"matchLabels": service["spec"]["selector"]},
                                  endpoint(d).labels))
        assert entry["targetPort"] in ports_by_name(main_container(backend)), address
    assert settings["segmenter"].model_dump()["model_repository"] == Path("/models")
    triton = load_section(TritonSettings, "triton", raw)
    assert ports_by_name(main_container(one(render("cpu"), "Deployment", "triton"))) == {
        "http": triton.http_port, "grpc": triton.grpc_port, "metrics": triton.metrics_port}


def test_listener_refuses_to_start_until_the_site_names_its_senders(tmp_path: Path) -> None:
    raw = _configuration("cpu", tmp_path)
    with pytest.raises(ConfigError, match="allowed_callers is empty"):
        load_section(ListenerSettings, "listener", raw)
