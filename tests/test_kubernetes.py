"""deploy/kubernetes/ is what a kube-prometheus user can apply, and never drifts from its sources.

No cluster is needed. The custom resources are validated against the ``openAPIV3Schema`` of the
prometheus-operator CRDs (tests/data/prometheus-operator/, source in SOURCES.md), made as strict as
``kubectl apply`` (server-side field validation ``Strict``, kubectl's default since 1.27): an unknown
field is an error, not silently pruned, and ``x-kubernetes-list-type: map`` keys are unique. The
ConfigMaps go through the ``kubernetes`` client's own models: a mistyped field fails, and an
unknown one is caught because the model does not give it back. Object metadata follows the
apiserver's name and label rules. Each check is shown to reject a broken manifest.

Then the contents: the PrometheusRules hold exactly the groups of prometheus/rules/*.yml, the
ConfigMaps exactly the dashboards of grafana/, the ServiceMonitors one per component serving
/metrics with the job names the rules select on; and ``check`` flags a stale manifest.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubernetes.client import ApiClient

from scripts.promconfig.kubernetes import (
    DASHBOARD_LABEL,
    MONITORED,
    render_kubernetes,
    stale_kubernetes_files,
)
from scripts.promconfig.prometheus_config import COMPOSE_TARGETS
from tests.servers import python_env, repo_root

ROOT = repo_root()
KUBE = ROOT / "deploy" / "kubernetes"
RULES = ROOT / "prometheus" / "rules"
GRAFANA = ROOT / "grafana"
SCHEMAS = ROOT / "tests" / "data" / "prometheus-operator"
#: kind -> (apiVersion, schema file) of the custom resources rendered.
CRDS = {"PrometheusRule": ("monitoring.coreos.com/v1", "prometheusrule.v1.schema.json"),
        "ServiceMonitor": ("monitoring.coreos.com/v1", "servicemonitor.v1.schema.json")}

# The apiserver's rules (k8s.io/apimachinery/pkg/util/validation): names are DNS-1123 subdomains,
# label values at most 63 characters of this shape, label keys an optional DNS prefix and a name.
DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
CONFIGMAP_KEY = re.compile(r"[-._a-zA-Z0-9]+")
#: A ConfigMap holds at most 1 MiB; client-side ``kubectl apply`` also copies the object into an
#: annotation, and all annotations together may hold 256 KiB.
CONFIGMAP_MAX = 1 << 20
ANNOTATIONS_MAX = 256 * 1024


# --- validators ---------------------------------------------------------------------------------

def _strict(schema: Any) -> Any:
    """``schema`` with unknown properties refused wherever Kubernetes would prune them."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


def _list_map_keys(validator: Any, keys: list[str], instance: Any, _schema: Any) -> Iterator[Any]:
    """``x-kubernetes-list-type: map``: no two items share the same values of ``keys``."""
    if not validator.is_type(instance, "array"):
        return
    seen: set[tuple[str, ...]] = set()
    for item in instance:
        key = tuple(json.dumps(item.get(k)) for k in keys)
        if key in seen:
            yield jsonschema.ValidationError(f"duplicate list-map key {dict(zip(keys, key, strict=True))}")
        seen.add(key)


# OpenAPI v3 schemas of CRDs follow draft 4's keyword semantics.
KubeValidator = jsonschema.validators.extend(  # type: ignore[no-untyped-call]  # untyped in the stubs
    jsonschema.Draft4Validator, {"x-kubernetes-list-map-keys": _list_map_keys})


def crd_validator(kind: str) -> Any:
    schema = json.loads((SCHEMAS / CRDS[kind][1]).read_text(encoding="utf-8"))
    return KubeValidator(_strict(schema))


def metadata_errors(meta: dict[str, Any]) -> list[str]:
    """What the apiserver would refuse in an object's name and labels."""
    errors = []
    name = meta.get("name", "")
    if len(name) > 253 or not DNS1123_SUBDOMAIN.fullmatch(name):
        errors.append(f"name {name!r} is not a DNS-1123 subdomain")
    for key, value in (meta.get("labels") or {}).items():
        prefix, _, label = key.rpartition("/")
        if len(label) > 63 or not LABEL_NAME.fullmatch(label):
            errors.append(f"label key {key!r}")
        if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.fullmatch(prefix)):
            errors.append(f"label key prefix {key!r}")
        if not isinstance(value, str) or len(value) > 63 or not LABEL_VALUE.fullmatch(value):
            errors.append(f"label value {key}={value!r}")
    return errors


def resource_errors(doc: dict[str, Any]) -> list[str]:
    """Every reason the apiserver would refuse ``doc`` (empty: accepted)."""
    kind = doc.get("kind")
    errors = metadata_errors(doc.get("metadata") or {})
    if kind in CRDS:
        if doc.get("apiVersion") != CRDS[kind][0]:
            errors.append(f"apiVersion {doc.get('apiVersion')!r}")
        errors += [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
                   for e in crd_validator(kind).iter_errors(doc)]
    elif kind == "ConfigMap":
        errors += configmap_errors(doc)
    else:
        errors.append(f"unexpected kind {kind!r}")
    return errors


def configmap_errors(doc: dict[str, Any]) -> list[str]:
    """The kubernetes client's V1ConfigMap model must take ``doc`` and give back the same."""
    client = ApiClient()
    try:
        model = client.deserialize(json.dumps(doc), "V1ConfigMap", "application/json")
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        return [f"V1ConfigMap: {exc}"]
    errors = []
    if client.sanitize_for_serialization(model) != doc:  # type: ignore[no-untyped-call]  # client untyped
        errors.append("V1ConfigMap dropped or changed fields (unknown field?)")
    if doc.get("apiVersion") != "v1":
        errors.append(f"apiVersion {doc.get('apiVersion')!r}")
    data = doc.get("data") or {}
    errors += [f"data key {k!r}" for k in data if not CONFIGMAP_KEY.fullmatch(k)]
    size = sum(len(k) + len(v.encode()) for k, v in data.items())
    if size > CONFIGMAP_MAX:
        errors.append(f"data is {size} bytes (limit {CONFIGMAP_MAX})")
    if len(json.dumps(doc)) > ANNOTATIONS_MAX:
        errors.append("too large for client-side kubectl apply's last-applied annotation")
    return errors


# --- the committed manifests ----------------------------------------------------------------------

def manifests(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((KUBE / name).read_text(encoding="utf-8")) if d is not None]


def all_objects() -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text(encoding="utf-8"))
    return [d for name in kustomization["resources"] for d in manifests(name)]


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in all_objects() if d["kind"] == kind]


def test_the_kustomization_lists_every_manifest_and_names_are_unique() -> None:
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text(encoding="utf-8"))
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(
        p.name for p in KUBE.glob("*.yaml") if p.name != "kustomization.yaml")
    keys = [(d["kind"], d["metadata"]["name"]) for d in all_objects()]
    assert len(keys) == len(set(keys))
    assert {k for k, _ in keys} == {"PrometheusRule", "ServiceMonitor", "ConfigMap"}


@pytest.mark.parametrize("doc", all_objects(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_object_is_accepted_by_its_schema(doc: dict[str, Any]) -> None:
    assert resource_errors(doc) == []


def _rule(doc: dict[str, Any]) -> dict[str, Any]:
    return next(r for g in doc["spec"]["groups"] for r in g["rules"] if "alert" in r)


def _endpoint(doc: dict[str, Any]) -> dict[str, Any]:
    endpoint: dict[str, Any] = doc["spec"]["endpoints"][0]
    return endpoint


#: The committed object each breakage starts from (the alerts, the exporter's monitor, a dashboard).
SAMPLES = {"bybit-options-tracker-alerts", "bybit-options-tracker-exporter",
           "bybit-options-tracker-dashboard-overview"}
Breakage = Callable[[dict[str, Any]], object]
BROKEN: dict[str, tuple[str, Breakage, str]] = {
    "rule without expr": ("PrometheusRule", lambda d: _rule(d).pop("expr"), "'expr' is a required property"),
    "for in words": ("PrometheusRule", lambda d: _rule(d).update({"for": "5 minutes"}), "does not match"),
    "misspelt field": ("PrometheusRule", lambda d: d["spec"].update({"group": []}), "Additional properties"),
    "group without name": ("PrometheusRule", lambda d: d["spec"]["groups"][0].pop("name"), "'name' is a"),
    "two groups, one name": ("PrometheusRule", lambda d: d["spec"]["groups"].append(d["spec"]["groups"][0]),
                             "duplicate list-map key"),
    "rule as a string": ("PrometheusRule", lambda d: d["spec"]["groups"][0]["rules"].append("up == 0"),
                         "is not of type 'object'"),
    "wrong apiVersion": ("PrometheusRule", lambda d: d.update({"apiVersion": "monitoring.coreos.com/v2"}),
                         "apiVersion"),
    "upper-case name": ("ServiceMonitor", lambda d: d["metadata"].update({"name": "Bybit_Exporter"}),
                        "DNS-1123"),
    "interval in words": ("ServiceMonitor", lambda d: _endpoint(d).update({"interval": "15 seconds"}),
                          "does not match"),
    "unknown relabel action": ("ServiceMonitor",
                               lambda d: _endpoint(d)["relabelings"][0].update({"action": "rename"}),
                               "is not one of"),
    "no selector": ("ServiceMonitor", lambda d: d["spec"].pop("selector"), "'selector' is a required"),
    "endpoint typo": ("ServiceMonitor", lambda d: _endpoint(d).update({"intervall": "15s"}),
                      "Additional properties"),
    "label value too long": ("ServiceMonitor",
                             lambda d: d["metadata"]["labels"].update({"release": "x" * 64}), "label value"),
    "numeric data": ("ConfigMap", lambda d: d["data"].update({"n.json": 1}), "valid string"),
    "unknown field": ("ConfigMap", lambda d: d.update({"datas": {"a": "b"}}), "dropped or changed"),
    "bad data key": ("ConfigMap", lambda d: d["data"].update({"a/b.json": "{}"}), "data key"),
    "label not a string": ("ConfigMap", lambda d: d["metadata"]["labels"].update({"grafana_dashboard": 1}),
                           "V1ConfigMap"),
    "over 1 MiB": ("ConfigMap", lambda d: d["data"].update({"big.json": "x" * CONFIGMAP_MAX}), "limit"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_manifest_is_rejected(case: str) -> None:
    """The validation can fail: each breakage of a committed object is refused, with its reason."""
    kind, breakage, reason = BROKEN[case]
    doc = copy.deepcopy(next(d for d in of_kind(kind) if d["metadata"]["name"] in SAMPLES))
    assert resource_errors(doc) == []
    breakage(doc)
    errors = resource_errors(doc)
    assert any(reason in e for e in errors), errors


# --- contents follow the sources ------------------------------------------------------------------

def test_the_prometheus_rules_hold_exactly_the_rule_files_groups() -> None:
    rules = {d["metadata"]["name"]: d["spec"]["groups"] for d in of_kind("PrometheusRule")}
    files = sorted(RULES.glob("*.yml"))
    assert len(rules) == len(files)
    for path in files:
        groups = yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
        assert rules[f"bybit-options-tracker-{path.stem}"] == groups, path.name
    every = [g["name"] for groups in rules.values() for g in groups]
    assert len(every) == len(set(every)), "a group name twice: Prometheus would refuse the rules"


def test_every_dashboard_is_a_configmap_for_the_grafana_sidecar() -> None:
    maps = of_kind("ConfigMap")
    dashboards = sorted(GRAFANA.rglob("*.json"))
    assert dashboards
    assert len(maps) == len(dashboards)
    by_key = {k: (m, v) for m in maps for k, v in m["data"].items()}
    for path in dashboards:
        config_map, text = by_key[path.name]
        assert config_map["metadata"]["labels"].items() >= DASHBOARD_LABEL.items()
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert text == path.read_text(encoding="utf-8")
        assert json.loads(text)["uid"] == json.loads(path.read_text(encoding="utf-8"))["uid"]


def test_one_service_monitor_per_component_serving_metrics_with_the_contract_job() -> None:
    """The rules select job="exporter"/"api": each monitor writes that job name."""
    ours = set(COMPOSE_TARGETS.jobs) - {"prometheus", "alertmanager"}  # the operator monitors those
    monitors = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in of_kind("ServiceMonitor")}
    assert set(monitors) == ours == set(MONITORED)
    rule_text = "".join(p.read_text(encoding="utf-8") for p in RULES.glob("*.yml"))
    for job, monitor in monitors.items():
        assert f'job="{job}"' in rule_text
        assert monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] == job
        (endpoint,) = monitor["spec"]["endpoints"]
        assert endpoint["path"] == "/metrics"
        assert endpoint["port"] == MONITORED[job][0]
        assert {"action": "replace", "targetLabel": "job", "replacement": job} in endpoint["relabelings"]


def test_every_object_carries_the_selector_labels() -> None:
    for doc in all_objects():
        labels = doc["metadata"]["labels"]
        assert labels["app.kubernetes.io/part-of"] == "bybit-options-tracker"
        assert labels["release"] == "kube-prometheus-stack"


# --- never drifts ---------------------------------------------------------------------------------

def test_the_committed_manifests_are_the_rendering() -> None:
    assert stale_kubernetes_files() == []


def test_a_changed_dashboard_or_hand_edit_makes_them_stale(tmp_path: Path) -> None:
    out = tmp_path / "kubernetes"
    shutil.copytree(KUBE, out)
    assert stale_kubernetes_files(out) == []
    grafana = tmp_path / "grafana"
    shutil.copytree(GRAFANA, grafana)
    first = sorted(grafana.rglob("*.json"))[0]
    first.write_text(first.read_text(encoding="utf-8").replace('"title"', '"title" ', 1), encoding="utf-8")
    assert stale_kubernetes_files(out, render_kubernetes(grafana_dir=grafana)) == ["dashboards.yaml"]
    (out / "prometheusrules.yaml").write_text(
        (out / "prometheusrules.yaml").read_text(encoding="utf-8").replace("for: 5m", "for: 6m", 1),
        encoding="utf-8")
    (out / "extra.yaml").write_text("kind: ConfigMap\n", encoding="utf-8")
    assert stale_kubernetes_files(out) == ["extra.yaml", "prometheusrules.yaml"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scripts.promconfig", *args], capture_output=True, text=True,
                          cwd=ROOT, env=python_env(), timeout=120, check=False)


def test_the_cli_writes_the_manifests_with_a_chosen_runbook_base(tmp_path: Path) -> None:
    done = _cli("kubernetes", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    for path in KUBE.glob("*.yaml"):
        assert (tmp_path / path.name).read_text(encoding="utf-8") == path.read_text(encoding="utf-8")
    base = "https://tracker.example.com/docs/runbooks/"
    done = _cli("kubernetes", "--out", str(tmp_path / "b"), "--runbook-base", base)
    assert done.returncode == 0, done.stderr
    objects = yaml.safe_load_all((tmp_path / "b" / "prometheusrules.yaml").read_text(encoding="utf-8"))
    alerts = [r for d in objects for g in d["spec"]["groups"] for r in g["rules"] if "alert" in r]
    assert alerts
    assert all(r["annotations"]["runbook_url"] == f"{base}{r['alert']}.md" for r in alerts)
