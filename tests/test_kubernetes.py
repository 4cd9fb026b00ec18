"""deploy/kubernetes/ is what a kube-prometheus user can apply, and never drifts from its sources.

No cluster is needed. The custom resources are validated against the ``openAPIV3Schema`` of the
prometheus-operator CRDs (tests/data/prometheus-operator/, source in SOURCES.md), made as strict as
``kubectl apply`` (server-side field validation ``Strict``, kubectl's default since 1.27): an unknown
field is an error, not silently pruned, and ``x-kubernetes-list-type: map`` keys are unique. The
built-in kinds (ConfigMap, Deployment, Service, PodDisruptionBudget) go through the ``kubernetes``
client's own models: a mistyped field fails, and an unknown one is caught because the model does
not give it back. Object metadata follows the apiserver's name and label rules, and no Secret is
committed. Each check is shown to reject a broken manifest.

Then the contents: the PrometheusRules hold exactly the groups of prometheus/rules/*.yml, the
ConfigMaps exactly the dashboards of grafana/, the ServiceMonitors one per component serving
/metrics with the job names the rules select on; and ``check`` flags a stale manifest.

The tracker's own workloads keep the contracts of the compose stack they mirror
(:func:`tracker_errors`): every env name is a knob of common/config.py and the values load;
REDIS_URL comes from the Secret the docs tell you to create; each Deployment runs compose's
command, image and memory limit as the Dockerfile's non-root user with a read-only root and no
privileges; its probes reach real ports and real routes of the app and mirror compose's health
checks (and the ingest has no liveness probe); each Service is selected by its ServiceMonitor,
exposes the port name it scrapes and selects the pods of its own component, whose container
port is the one the component listens on.
"""

from __future__ import annotations

import copy
import functools
import json
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubernetes.client import ApiClient
from kubernetes.utils import parse_quantity

from api.app import build_app as build_api
from common.config import ConfigError, Settings, knob_table, load_settings
from exporter.server import build_app as build_exporter
from scripts.promconfig.kubelabels import MONITORED
from scripts.promconfig.kubernetes import (
    DASHBOARD_LABEL,
    render_kubernetes,
    stale_kubernetes_files,
)
from scripts.promconfig.prometheus_config import COMPOSE_TARGETS
from tests.servers import python_env, repo_root
from tracker_tools.healthcheck.command import OWN_REPLICAS, expand_own

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


class _ComposeLoader(yaml.SafeLoader):
    """YAML as compose reads it: docker-compose.ha.yml tags keys ``!reset`` (read here as null)."""


_ComposeLoader.add_constructor("!reset", lambda _loader, _node: None)
#: What the workloads mirror: the compose stack, single node and HA.
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
COMPOSE_HA = yaml.load((ROOT / "docker-compose.ha.yml").read_text(encoding="utf-8"), Loader=_ComposeLoader)
INGEST_REPLICA_LABEL = "bybit-options-tracker/ingest-replica"
#: Every knob of common/config.py, by environment name.
KNOBS = frozenset(env for env, _, _ in knob_table())
#: What docs/kubernetes.md tells the operator to create; never committed.
REDIS_SECRET = {"name": "bybit-options-tracker-redis", "key": "url"}
CONFIG_MAP = "bybit-options-tracker-config"
COMPONENT = "app.kubernetes.io/component"
#: The app each HTTP component serves, built as the process builds it: probes must hit its routes.
APPS = {"exporter": build_exporter, "api": build_api}
#: kind -> (apiVersion, model of the kubernetes client) of the built-in objects rendered.
MODELS = {"ConfigMap": ("v1", "V1ConfigMap"), "Service": ("v1", "V1Service"),
          "Deployment": ("apps/v1", "V1Deployment"),
          "PodDisruptionBudget": ("policy/v1", "V1PodDisruptionBudget")}
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
    """Every reason the apiserver would refuse ``doc`` (empty: accepted), and a committed Secret."""
    kind = doc.get("kind")
    errors = metadata_errors(doc.get("metadata") or {})
    if kind in CRDS:
        if doc.get("apiVersion") != CRDS[kind][0]:
            errors.append(f"apiVersion {doc.get('apiVersion')!r}")
        errors += [f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
                   for e in crd_validator(kind).iter_errors(doc)]
    elif kind in MODELS:
        refused = model_errors(doc, *MODELS[kind])
        errors += refused
        if kind == "ConfigMap" and not refused:
            errors += configmap_errors(doc)
        if kind == "Deployment" and not refused:
            errors += selector_errors(doc)
    elif kind == "Secret":
        held = "with data " if doc.get("data") or doc.get("stringData") else ""
        errors.append(f"a Secret {held}is committed: credentials are created in the cluster "
                      "(docs/kubernetes.md)")
    else:
        errors.append(f"unexpected kind {kind!r}")
    return errors


def model_errors(doc: dict[str, Any], api_version: str, model: str) -> list[str]:
    """The kubernetes client's ``model`` must take ``doc`` and give back the same."""
    client = ApiClient()
    try:
        parsed = client.deserialize(json.dumps(doc), model, "application/json")
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        return [f"{model}: {exc}"]
    errors = []
    if client.sanitize_for_serialization(parsed) != doc:  # type: ignore[no-untyped-call]  # client untyped
        errors.append(f"{model} dropped or changed fields (unknown field?)")
    if doc.get("apiVersion") != api_version:
        errors.append(f"apiVersion {doc.get('apiVersion')!r}")
    return errors


def configmap_errors(doc: dict[str, Any]) -> list[str]:
    """Data keys and sizes the apiserver and client-side ``kubectl apply`` accept."""
    errors = []
    data = doc.get("data") or {}
    errors += [f"data key {k!r}" for k in data if not CONFIGMAP_KEY.fullmatch(k)]
    size = sum(len(k) + len(v.encode()) for k, v in data.items())
    if size > CONFIGMAP_MAX:
        errors.append(f"data is {size} bytes (limit {CONFIGMAP_MAX})")
    if len(json.dumps(doc)) > ANNOTATIONS_MAX:
        errors.append("too large for client-side kubectl apply's last-applied annotation")
    return errors


def selector_errors(doc: dict[str, Any]) -> list[str]:
    """The apiserver refuses a Deployment whose selector does not match its pod template."""
    selector = doc["spec"]["selector"].get("matchLabels") or {}
    labels = doc["spec"]["template"].get("metadata", {}).get("labels") or {}
    if not selector or not selector.items() <= labels.items():
        return ["selector does not match the template's labels"]
    return []


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
    assert {k for k, _ in keys} == {"PrometheusRule", "ServiceMonitor", "ConfigMap", "Service", "Deployment",
                                    "PodDisruptionBudget"}


@pytest.mark.parametrize("doc", all_objects(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_object_is_accepted_by_its_schema(doc: dict[str, Any]) -> None:
    assert resource_errors(doc) == []


def _rule(doc: dict[str, Any]) -> dict[str, Any]:
    return next(r for g in doc["spec"]["groups"] for r in g["rules"] if "alert" in r)


def _endpoint(doc: dict[str, Any]) -> dict[str, Any]:
    endpoint: dict[str, Any] = doc["spec"]["endpoints"][0]
    return endpoint


def _probe(doc: dict[str, Any], which: str) -> dict[str, Any]:
    probe: dict[str, Any] = _container(doc)[which]
    return probe


def _add_env(doc: dict[str, Any], name: str, value: str) -> None:
    _container(doc)["env"].append({"name": name, "value": value})


def _as_secret(doc: dict[str, Any]) -> None:
    doc.update({"kind": "Secret", "data": {"url": "cmVkaXM6Ly86cHdAcmVkaXM6NjM3OS8w"}})


def _redis_url_in_clear(doc: dict[str, Any]) -> None:
    item = _env(doc, "REDIS_URL")
    item.pop("valueFrom")
    item["value"] = "redis://:pw@redis:6379/0"


#: The committed objects the breakages start from, as (kind, name).
ALERTS = ("PrometheusRule", "bybit-options-tracker-alerts")
MONITOR = ("ServiceMonitor", "bybit-options-tracker-exporter")
DASHBOARD = ("ConfigMap", "bybit-options-tracker-dashboard-overview")
CONFIG = ("ConfigMap", CONFIG_MAP)
INGEST = ("Deployment", "bybit-options-tracker-ingest")
EXPORTER = ("Deployment", "bybit-options-tracker-exporter")
API = ("Deployment", "bybit-options-tracker-api")
EXPORTER_SVC = ("Service", "bybit-options-tracker-exporter")
API_SVC = ("Service", "bybit-options-tracker-api")
API_PDB = ("PodDisruptionBudget", "bybit-options-tracker-api")
Breakage = Callable[[dict[str, Any]], object]
BROKEN: dict[str, tuple[tuple[str, str], Breakage, str]] = {
    "rule without expr": (ALERTS, lambda d: _rule(d).pop("expr"), "'expr' is a required property"),
    "for in words": (ALERTS, lambda d: _rule(d).update({"for": "5 minutes"}), "does not match"),
    "misspelt field": (ALERTS, lambda d: d["spec"].update({"group": []}), "Additional properties"),
    "group without name": (ALERTS, lambda d: d["spec"]["groups"][0].pop("name"), "'name' is a"),
    "two groups, one name": (ALERTS, lambda d: d["spec"]["groups"].append(d["spec"]["groups"][0]),
                             "duplicate list-map key"),
    "rule as a string": (ALERTS, lambda d: d["spec"]["groups"][0]["rules"].append("up == 0"),
                         "is not of type 'object'"),
    "wrong apiVersion": (ALERTS, lambda d: d.update({"apiVersion": "monitoring.coreos.com/v2"}),
                         "apiVersion"),
    "upper-case name": (MONITOR, lambda d: d["metadata"].update({"name": "Bybit_Exporter"}), "DNS-1123"),
    "interval in words": (MONITOR, lambda d: _endpoint(d).update({"interval": "15 seconds"}),
                          "does not match"),
    "unknown relabel action": (MONITOR, lambda d: _endpoint(d)["relabelings"][0].update({"action": "rename"}),
                               "is not one of"),
    "no selector": (MONITOR, lambda d: d["spec"].pop("selector"), "'selector' is a required"),
    "endpoint typo": (MONITOR, lambda d: _endpoint(d).update({"intervall": "15s"}), "Additional properties"),
    "label value too long": (MONITOR, lambda d: d["metadata"]["labels"].update({"release": "x" * 64}),
                             "label value"),
    "numeric data": (DASHBOARD, lambda d: d["data"].update({"n.json": 1}), "valid string"),
    "unknown field": (DASHBOARD, lambda d: d.update({"datas": {"a": "b"}}), "dropped or changed"),
    "bad data key": (DASHBOARD, lambda d: d["data"].update({"a/b.json": "{}"}), "data key"),
    "label not a string": (DASHBOARD, lambda d: d["metadata"]["labels"].update({"grafana_dashboard": 1}),
                           "V1ConfigMap"),
    "over 1 MiB": (DASHBOARD, lambda d: d["data"].update({"big.json": "x" * CONFIGMAP_MAX}), "limit"),
    # the tracker's configuration
    "config key not a knob": (CONFIG, lambda d: d["data"].update({"COINS": "BTC"}), "not a knob"),
    "config value refused": (CONFIG, lambda d: d["data"].update({"LOG_FORMAT": "xml"}),
                             "load_settings refuses"),
    "REDIS_URL in the ConfigMap": (CONFIG, lambda d: d["data"].update({"REDIS_URL": "redis://:pw@redis:6379/0"}),
                                   "must come from the Secret"),
    "a Secret with data": (CONFIG, _as_secret, "a Secret with data is committed"),
    # Deployments: the model, then the contracts
    "container field typo": (EXPORTER, lambda d: _container(d).update({"imagePulPolicy": "Always"}),
                             "dropped or changed"),
    "replicas in words": (API, lambda d: d["spec"].update({"replicas": "two"}), "V1Deployment"),
    "selector misses the pods": (API, lambda d: d["spec"]["selector"]["matchLabels"].update(
        {COMPONENT: "apis"}), "selector does not match"),
    "env name not a knob": (EXPORTER, lambda d: _add_env(d, "EXPORTER_PROT", "9108"), "not a knob"),
    "env value refused": (API, lambda d: _add_env(d, "API_CACHE_TTL", "-1"), "load_settings refuses"),
    "REDIS_URL in the clear": (INGEST, _redis_url_in_clear, "must come from the Secret"),
    "REDIS_URL from another Secret": (API, lambda d: _env(d, "REDIS_URL")["valueFrom"]["secretKeyRef"].update(
        {"name": "redis"}), "must come from the Secret"),
    "no ConfigMap": (EXPORTER, lambda d: _container(d).pop("envFrom"), "envFrom"),
    "port moved by env": (EXPORTER, lambda d: _env(d, "EXPORTER_PORT").update({"value": "9109"}),
                          "exporter listens on 0.0.0.0:9109"),
    "listening on loopback": (API, lambda d: _env(d, "API_HOST").update({"value": "127.0.0.1"}),
                              "api listens on 127.0.0.1"),
    "runs as root": (INGEST, lambda d: _pod(d)["securityContext"].update({"runAsUser": 0}), "runAsUser"),
    "root allowed": (EXPORTER, lambda d: _pod(d)["securityContext"].update({"runAsNonRoot": False}),
                     "runAsNonRoot"),
    "writable root": (API, lambda d: _container(d)["securityContext"].update(
        {"readOnlyRootFilesystem": False}), "readOnlyRootFilesystem"),
    "privilege escalation": (EXPORTER, lambda d: _container(d)["securityContext"].update(
        {"allowPrivilegeEscalation": True}), "allowPrivilegeEscalation"),
    "capabilities kept": (INGEST, lambda d: _container(d)["securityContext"].update(
        {"capabilities": {"drop": ["NET_RAW"]}}), "drop ALL"),
    "no seccomp profile": (API, lambda d: _pod(d)["securityContext"].pop("seccompProfile"), "seccompProfile"),
    "service links": (API, lambda d: _pod(d).update({"enableServiceLinks": True}), "enableServiceLinks"),
    "probe on an undeclared port": (EXPORTER, lambda d: _probe(d, "readinessProbe")["httpGet"].update(
        {"port": "http"}), "not a container port"),
    "probe on a missing route": (API, lambda d: _probe(d, "readinessProbe")["httpGet"].update(
        {"path": "/health"}), "not a route of api"),
    "probe command not installed": (INGEST, lambda d: _probe(d, "readinessProbe")["exec"].update(
        {"command": ["healthcheck", "--no-api"]}), "not an installed command"),
    "heartbeat liveness on the ingest": (INGEST, lambda d: _container(d).update(
        {"livenessProbe": copy.deepcopy(_probe(d, "readinessProbe"))}), "restarts it whenever Redis is down"),
    "no readiness probe": (API, lambda d: _container(d).pop("readinessProbe"), "no readiness probe"),
    "probe not compose's check": (INGEST, lambda d: _probe(d, "readinessProbe")["exec"]["command"].append(
        "--json"), "mirror compose's health check"),
    "probe timing not compose's": (API, lambda d: _probe(d, "livenessProbe").update({"periodSeconds": 60}),
                                   "mirror compose's health check"),
    "command not compose's": (EXPORTER, lambda d: _container(d).update({"command": ["python", "-m", "api"]}),
                              "is not compose's"),
    "image not compose's": (API, lambda d: _container(d).update({"image": "bybit-options-tracker:latest"}),
                            "image"),
    "memory limit not compose's": (INGEST, lambda d: _container(d)["resources"]["limits"].update(
        {"memory": "512Mi"}), "memory limit"),
    "memory request above the limit": (API, lambda d: _container(d)["resources"]["requests"].update(
        {"memory": "1Gi"}), "memory request above the limit"),
    "a second container": (EXPORTER, lambda d: _pod(d)["containers"].append(
        {**copy.deepcopy(_container(d)), "name": "sidecar"}), "one container named exporter"),
    "two ingests under one name": (INGEST, lambda d: d["spec"].update({"replicas": 2}), "one ingest"),
    "rolling ingest": (INGEST, lambda d: d["spec"].update({"strategy": {"type": "RollingUpdate"}}),
                       "strategy Recreate"),
    "two exporters": (EXPORTER, lambda d: d["spec"].update({"replicas": 2}), "two exporters"),
    # Services
    "service field typo": (EXPORTER_SVC, lambda d: d["spec"].update({"selectors": {}}), "dropped or changed"),
    "selects no pods": (EXPORTER_SVC, lambda d: d["spec"]["selector"].update({COMPONENT: "exporterr"}),
                        "selects the pods of 0 Deployments"),
    "selects another component": (API_SVC, lambda d: d["spec"]["selector"].update({COMPONENT: "exporter"}),
                                  "selects the pods of exporter"),
    "port name not scraped": (API_SVC, lambda d: d["spec"]["ports"][0].update({"name": "web"}),
                              "the one its ServiceMonitor scrapes"),
    "targetPort elsewhere": (EXPORTER_SVC, lambda d: d["spec"]["ports"][0].update({"targetPort": 9109}),
                             "targetPort 9109"),
    "service port not the contract's": (API_SVC, lambda d: d["spec"]["ports"][0].update({"port": 80}),
                                        "contract port"),
    "no monitor selects it": (EXPORTER_SVC, lambda d: d["metadata"]["labels"].update(
        {"app.kubernetes.io/name": "tracker"}), "0 ServiceMonitors"),
    # the API's disruption budget
    "budget selects nothing": (API_PDB, lambda d: d["spec"]["selector"]["matchLabels"].update(
        {COMPONENT: "apis"}), "selects 0 Deployments"),
    "budget blocks drains": (API_PDB, lambda d: d["spec"].update({"maxUnavailable": 0}), "blocks drains"),
}


def all_errors(doc: dict[str, Any], objects: list[dict[str, Any]]) -> list[str]:
    """What the apiserver refuses, or else which contract of the tracker ``doc`` breaks."""
    return resource_errors(doc) or tracker_errors(doc, objects)


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_manifest_is_rejected(case: str) -> None:
    """The validation can fail: each breakage of a committed object is refused, with its reason."""
    (kind, name), breakage, reason = BROKEN[case]
    objects = all_objects()
    (index,) = [i for i, d in enumerate(objects) if d["kind"] == kind and d["metadata"]["name"] == name]
    doc = copy.deepcopy(objects[index])
    assert all_errors(doc, objects) == []
    breakage(doc)
    errors = all_errors(doc, [*objects[:index], doc, *objects[index + 1:]])
    assert any(reason in e for e in errors), errors


# --- the tracker's workloads keep the compose stack's contracts ------------------------------------

def _component(doc: dict[str, Any]) -> str:
    component: str = doc["metadata"]["labels"][COMPONENT]
    return component


def _pod(doc: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = doc["spec"]["template"]["spec"]
    return pod


def _container(doc: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = _pod(doc)["containers"][0]
    return container


def _env(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in _container(doc)["env"] if e["name"] == name)


def _selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and selector.items() <= labels.items()


@functools.cache
def _routes(component: str) -> frozenset[str]:
    """The GET routes of ``component``'s aiohttp app (its Redis client is created, never connected)."""
    app = APPS[component](Settings())
    return frozenset(r.resource.canonical for r in app.router.routes() if r.method == "GET" and r.resource)


@functools.cache
def _console_scripts() -> frozenset[str]:
    """The commands ``pip install`` puts on the image's PATH (pyproject's [project.scripts])."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return frozenset(project["scripts"])


def _dockerfile_user() -> tuple[int, int]:
    match = re.search(r"^USER (\d+):(\d+)$", (ROOT / "Dockerfile").read_text(encoding="utf-8"), re.MULTILINE)
    assert match, "the Dockerfile sets no numeric USER"
    return int(match.group(1)), int(match.group(2))


def _compose_default(text: str) -> str:
    """``${VAR:-default}`` of docker-compose.yml read as its default."""
    return re.sub(r"\$\{[A-Z0-9_]+:-([^}]*)\}", r"\1", text)


def _docker_bytes(text: str) -> int:
    """A compose memory size (Docker's units are binary: 256M is 256 MiB)."""
    match = re.fullmatch(r"(\d+)([bkmg]?)", text.lower())
    assert match, text
    return int(match.group(1)) << (10 * " kmg".index(match.group(2) or " "))


def _quantity(text: str) -> float:
    """A Kubernetes quantity (``256Mi``) as a number."""
    return float(parse_quantity(text))  # type: ignore[no-untyped-call]  # the client is untyped


def _seconds(text: str) -> int:
    match = re.fullmatch(r"(\d+)s", text)
    assert match, text
    return int(match.group(1))


def _objects_named(objects: list[dict[str, Any]], kind: str, name: str) -> list[dict[str, Any]]:
    return [d for d in objects if d["kind"] == kind and d["metadata"]["name"] == name]


def tracker_errors(doc: dict[str, Any], objects: list[dict[str, Any]]) -> list[str]:
    """How ``doc`` breaks a contract of the tracker, judged among the committed ``objects``."""
    kind = doc.get("kind")
    if kind == "ConfigMap" and doc["metadata"]["name"] == CONFIG_MAP:
        return config_errors(doc["data"])
    if kind == "Deployment":
        return deployment_errors(doc, objects)
    if kind == "Service":
        return service_errors(doc, objects)
    if kind == "PodDisruptionBudget":
        return budget_errors(doc, objects)
    return []


def config_errors(env: Mapping[str, str]) -> list[str]:
    """Env names are knobs, REDIS_URL is not among them in the clear, and the values load."""
    errors = [f"{name} is not a knob of common/config.py" for name in env if name not in KNOBS]
    if "REDIS_URL" in env:
        errors.append(f"REDIS_URL must come from the Secret {REDIS_SECRET['name']}, not in the clear")
    try:
        load_settings(env=dict(env))
    except ConfigError as exc:
        errors.append(f"load_settings refuses the configuration: {exc}")
    return errors


def _container_env(doc: dict[str, Any], objects: list[dict[str, Any]]) -> tuple[dict[str, str], list[str]]:
    """The environment the container starts with (ConfigMap, then its own values) and what is wrong."""
    container = _container(doc)
    errors = []
    refs = [ref.get("configMapRef", {}).get("name") for ref in container.get("envFrom", [])]
    if refs != [CONFIG_MAP] or not _objects_named(objects, "ConfigMap", CONFIG_MAP):
        errors.append(f"envFrom {refs} is not the committed ConfigMap {CONFIG_MAP}")
    env = {k: v for m in _objects_named(objects, "ConfigMap", CONFIG_MAP) for k, v in m["data"].items()}
    for item in container.get("env", []):
        if item["name"] == "REDIS_URL":
            if item.get("valueFrom", {}).get("secretKeyRef") != REDIS_SECRET:
                errors.append(f"REDIS_URL must come from the Secret {REDIS_SECRET['name']} key url")
            continue
        env[item["name"]] = item.get("value", "")
    if not any(e["name"] == "REDIS_URL" for e in container.get("env", [])):
        errors.append(f"REDIS_URL must come from the Secret {REDIS_SECRET['name']} key url")
    return env, errors


def security_errors(doc: dict[str, Any]) -> list[str]:
    """Non-root as the Dockerfile's USER, read-only root, no privilege, RuntimeDefault seccomp."""
    pod, container = _pod(doc), _container(doc)
    effective = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    uid, gid = _dockerfile_user()
    errors = []
    if effective.get("runAsNonRoot") is not True:
        errors.append("runAsNonRoot must be true")
    if effective.get("runAsUser") != uid or effective.get("runAsGroup") != gid:
        errors.append(f"runAsUser/runAsGroup must be the Dockerfile's {uid}:{gid}")
    if effective.get("readOnlyRootFilesystem") is not True:
        errors.append("readOnlyRootFilesystem must be true (the processes write nothing)")
    if effective.get("allowPrivilegeEscalation") is not False:
        errors.append("allowPrivilegeEscalation must be false")
    if effective.get("capabilities") != {"drop": ["ALL"]}:
        errors.append("capabilities must drop ALL and add none")
    if effective.get("seccompProfile") != {"type": "RuntimeDefault"}:
        errors.append("seccompProfile must be RuntimeDefault")
    if pod.get("enableServiceLinks") is not False:
        errors.append("enableServiceLinks must be false: a Service named api injects API_PORT=tcp://...")
    return errors


def probe_errors(doc: dict[str, Any]) -> list[str]:
    """Every probe reaches a declared port and a real route, or runs an installed command."""
    component, container = _component(doc), _container(doc)
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    errors = []
    if "readinessProbe" not in container:
        errors.append("no readiness probe")
    for which in ("readinessProbe", "livenessProbe", "startupProbe"):
        probe = container.get(which)
        if probe is None:
            continue
        if "httpGet" in probe:
            port, path = probe["httpGet"]["port"], probe["httpGet"]["path"]
            if port not in ports and port not in ports.values():
                errors.append(f"{which} port {port!r} is not a container port")
            if component not in APPS or path not in _routes(component):
                errors.append(f"{which} path {path} is not a route of {component}")
        elif "exec" in probe:
            if probe["exec"]["command"][0] not in _console_scripts():
                errors.append(f"{which} runs {probe['exec']['command'][0]!r}, not an installed command")
        else:
            errors.append(f"{which} is neither httpGet nor exec")
    if component == "ingest" and "livenessProbe" in container:
        errors.append("a liveness probe on the ingest restarts it whenever Redis is down")
    return errors


def _compose_service(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The compose service that runs what ``doc`` runs: the component's, or for a named ingest
    replica (HA) the service of docker-compose.ha.yml with that INGEST_REPLICA, merged as compose
    merges it over the base file."""
    component = _component(doc)
    base: dict[str, Any] = COMPOSE["services"][component]
    replica = next((e.get("value") for e in _container(doc).get("env", []) if e["name"] == "INGEST_REPLICA"),
                   None)
    if component != "ingest" or replica in {None, Settings().ingest_replica}:
        return base
    for service in COMPOSE_HA["services"].values():
        if (service.get("environment") or {}).get("INGEST_REPLICA") == replica:
            check = {**base["healthcheck"], **service.get("healthcheck", {})}
            return {**base, **service, "healthcheck": check}
    return None


def compose_errors(doc: dict[str, Any]) -> list[str]:
    """Same command, image, memory limit and health check as the compose service of the component."""
    container = _container(doc)
    service = _compose_service(doc)
    if service is None:
        return ["no compose service runs this ingest replica (docker-compose.ha.yml names a and b)"]
    errors = []
    if container.get("command") != service["command"]:
        errors.append(f"command {container.get('command')} is not compose's {service['command']}")
    if container.get("image") != _compose_default(service["image"]):
        errors.append(f"image {container.get('image')} is not compose's {_compose_default(service['image'])}")
    limit = _docker_bytes(service["deploy"]["resources"]["limits"]["memory"])
    resources = container.get("resources", {})
    if _quantity(resources.get("limits", {}).get("memory", "0")) != limit:
        errors.append(f"memory limit is not compose's {limit} bytes")
    if _quantity(resources.get("requests", {}).get("memory", "0")) > limit:
        errors.append("memory request above the limit")
    errors += _health_errors(container, service["healthcheck"])
    return errors


def _health_errors(container: dict[str, Any], check: dict[str, Any]) -> list[str]:
    """The probe that mirrors compose's health check (liveness if any, else readiness) asks what it
    asks (the same command, or the same port and path) on the same interval, timeout and retries."""
    probe = container.get("livenessProbe") or container.get("readinessProbe") or {}
    test = check["test"]
    if test[0] == "CMD-SHELL":  # the ingest: `bybit-tracker healthcheck ... || exit 1`
        expected = shlex.split(re.sub(r"\s*\|\|\s*exit 1$", "", test[1]))
        same = probe.get("exec", {}).get("command") == expected
    else:  # python -c "...urlopen('http://127.0.0.1:PORT/PATH'..."
        match = re.search(r"http://127\.0\.0\.1:(\d+)(/[^'\"]*)", " ".join(test))
        assert match, test
        ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
        get = probe.get("httpGet", {})
        same = (ports.get(get.get("port"), get.get("port")) == int(match.group(1))
                and get.get("path") == match.group(2))
    timing = (probe.get("periodSeconds"), probe.get("timeoutSeconds"), probe.get("failureThreshold"))
    if not same or timing != (_seconds(check["interval"]), _seconds(check["timeout"]), check["retries"]):
        return ["the probe does not mirror compose's health check "
                "(command or URL, interval, timeout, retries)"]
    return []


def deployment_errors(doc: dict[str, Any], objects: list[dict[str, Any]]) -> list[str]:
    """A tracker component as compose runs it, hardened, listening where its Service sends traffic."""
    component, container = _component(doc), _container(doc)
    if len(_pod(doc)["containers"]) != 1 or container["name"] != component:
        return [f"one container named {component} expected"]
    env, errors = _container_env(doc, objects)
    refused = config_errors(env)
    errors += refused + security_errors(doc) + probe_errors(doc) + compose_errors(doc)
    spec = doc["spec"]
    if component == "ingest" and (spec["replicas"] != 1 or spec["strategy"] != {"type": "Recreate"}):
        errors.append("one ingest per INGEST_REPLICA name: 1 replica, strategy Recreate")
    if component == "exporter" and spec["replicas"] != 1:
        errors.append("two exporters double every sum the rules take over job=exporter")
    if component == "ingest":
        errors += ingest_errors(doc, env, objects)
    errors += [f"selector overlaps the pods of {d['metadata']['name']}" for d in objects
               if d["kind"] == "Deployment" and d["metadata"]["name"] != doc["metadata"]["name"]
               and _selects(spec["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"])]
    if component in MONITORED and not refused:
        settings = load_settings(env=env)
        host, port = getattr(settings, f"{component}_host"), getattr(settings, f"{component}_port")
        declared = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
        if host != "0.0.0.0" or declared.get(MONITORED[component][0]) != port:
            errors.append(f"{component} listens on {host}:{port}, the container declares {declared}")
    return errors


def ingest_errors(doc: dict[str, Any], env: Mapping[str, str], objects: list[dict[str, Any]]) -> list[str]:
    """Each ingest writes under its own INGEST_REPLICA, its pods labelled with it; several ingests
    write monotonically (docs/high-availability.md)."""
    def replica(deployment: dict[str, Any]) -> str:
        own = {e["name"]: e.get("value") for e in _container(deployment).get("env", [])}
        return str(own.get("INGEST_REPLICA") or Settings().ingest_replica)

    ingests = [d for d in objects if d["kind"] == "Deployment" and _component(d) == "ingest"]
    mine = replica(doc)
    errors = []
    if doc["spec"]["template"]["metadata"]["labels"].get(INGEST_REPLICA_LABEL) != mine:
        errors.append(f"pods not labelled {INGEST_REPLICA_LABEL}={mine}, the INGEST_REPLICA they write under")
    sharing = [d["metadata"]["name"] for d in ingests if replica(d) == mine]
    if len(sharing) > 1:
        errors.append(f"INGEST_REPLICA {mine} is written by {len(sharing)} Deployments: {sharing}")
    try:
        monotonic = load_settings(env=dict(env)).monotonic_writes
    except ConfigError:  # reported by config_errors
        return errors
    if len(ingests) > 1 and not monotonic:
        errors.append(f"{len(ingests)} ingests write one Redis: INGEST_MONOTONIC_WRITES must be true")
    return errors


def service_errors(doc: dict[str, Any], objects: list[dict[str, Any]]) -> list[str]:
    """Selected by its ServiceMonitor, on the port it scrapes, sending to its own component's port."""
    component, labels = _component(doc), doc["metadata"]["labels"]
    errors = []
    monitors = [m for m in objects if m["kind"] == "ServiceMonitor"
                and _selects(m["spec"]["selector"]["matchLabels"], labels)]
    names = [p.get("name") for p in doc["spec"]["ports"]]
    if len(monitors) != 1:
        errors.append(f"{len(monitors)} ServiceMonitors select this Service, not 1")
    elif monitors[0]["spec"]["endpoints"][0]["port"] not in names:
        errors.append(f"no port named {monitors[0]['spec']['endpoints'][0]['port']!r}, "
                      "the one its ServiceMonitor scrapes")
    pods = [d for d in objects if d["kind"] == "Deployment"
            and _selects(doc["spec"]["selector"], d["spec"]["template"]["metadata"]["labels"])]
    if len(pods) != 1:
        return [*errors, f"selects the pods of {len(pods)} Deployments, not 1"]
    if _component(pods[0]) != component:
        return [*errors, f"selects the pods of {_component(pods[0])}, not of {component}"]
    declared = {p.get("name"): p["containerPort"] for p in _container(pods[0]).get("ports", [])}
    listens = getattr(Settings(), f"{component}_port")
    for port in doc["spec"]["ports"]:
        target = port.get("targetPort", port["port"])
        if declared.get(target, target if target in declared.values() else None) != listens:
            errors.append(f"targetPort {target!r} is not the container port {listens} {component} listens on")
        if port["port"] != listens:
            errors.append(f"port {port['port']} is not the contract port {listens} (docs/CONTRACTS.md)")
    return errors


def budget_errors(doc: dict[str, Any], objects: list[dict[str, Any]]) -> list[str]:
    """A disruption budget covers one multi-replica Deployment and still lets a drain proceed."""
    pods = [d for d in objects if d["kind"] == "Deployment"
            and _selects(doc["spec"]["selector"]["matchLabels"], d["spec"]["template"]["metadata"]["labels"])]
    if len(pods) != 1 or _component(pods[0]) != _component(doc):
        return [f"the PodDisruptionBudget selects {len(pods)} Deployments, not its component's"]
    if doc["spec"].get("maxUnavailable", 0) < 1 or pods[0]["spec"]["replicas"] < 2:
        return ["the PodDisruptionBudget blocks drains: it must allow one pod of several to go"]
    return []


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
    maps = [m for m in of_kind("ConfigMap") if "grafana_dashboard" in m["metadata"]["labels"]]
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


def _workloads() -> list[dict[str, Any]]:
    return [d for d in all_objects() if d["kind"] in {"Deployment", "Service", "PodDisruptionBudget"}
            or d["metadata"]["name"] == CONFIG_MAP]


@pytest.mark.parametrize("doc", _workloads(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_the_tracker_objects_keep_the_compose_stack_s_contracts(doc: dict[str, Any]) -> None:
    """Knobs, Secret, image, command, user, memory, probes, ports: see :func:`tracker_errors`."""
    assert tracker_errors(doc, all_objects()) == []


def test_one_deployment_per_tracker_service_of_compose_and_a_service_per_monitor() -> None:
    """The ingest, exporter and API run as compose runs them; what is scraped has its Service."""
    tracker = {name for name, s in COMPOSE["services"].items()
               if s.get("command", [])[:2] == ["python", "-m"] and "profiles" not in s}
    assert {_component(d) for d in of_kind("Deployment")} == tracker == {"ingest", "exporter", "api"}
    assert {_component(d) for d in of_kind("Service")} == set(MONITORED)
    # only the API has several replicas, and only it a disruption budget
    assert {_component(d): d["spec"]["replicas"] for d in of_kind("Deployment")} == {
        "ingest": 1, "exporter": 1, "api": 2}
    assert [_component(d) for d in of_kind("PodDisruptionBudget")] == ["api"]


def test_every_env_name_is_a_knob_and_the_configuration_loads() -> None:
    (config,) = [d for d in of_kind("ConfigMap") if d["metadata"]["name"] == CONFIG_MAP]
    names = set(config["data"]) | {e["name"] for d in of_kind("Deployment") for e in _container(d)["env"]}
    assert names <= KNOBS, names - KNOBS
    assert load_settings(env=config["data"]) == Settings()  # the documented defaults, live Bybit


def test_no_secret_is_committed_and_redis_url_is_read_from_the_documented_one() -> None:
    every = [d for path in KUBE.glob("*.yaml") for d in manifests(path.name)]
    assert not [d for d in every if d.get("kind") == "Secret"]
    for deployment in of_kind("Deployment"):
        assert _env(deployment, "REDIS_URL") == {"name": "REDIS_URL",
                                                 "valueFrom": {"secretKeyRef": REDIS_SECRET}}
    (config,) = [d for d in of_kind("ConfigMap") if d["metadata"]["name"] == CONFIG_MAP]
    assert "REDIS_URL" not in config["data"]


@functools.cache
def _ha_rendering() -> str:
    return render_kubernetes(ingest_replicas=("a", "b"))["workloads.yaml"]


def ha_objects() -> list[dict[str, Any]]:
    """The HA rendering's workloads (two ingests, a and b) with the committed ServiceMonitors."""
    return [*(d for d in yaml.safe_load_all(_ha_rendering()) if d), *of_kind("ServiceMonitor")]


def test_the_ha_rendering_runs_two_ingests_as_docker_compose_ha_does() -> None:
    objects = ha_objects()
    for doc in objects:
        assert all_errors(doc, objects) == [], doc["metadata"]["name"]
    ingests = {d["metadata"]["name"]: _env(d, "INGEST_REPLICA")["value"] for d in objects
               if d["kind"] == "Deployment" and _component(d) == "ingest"}
    assert ingests == {"bybit-options-tracker-ingest-a": "a", "bybit-options-tracker-ingest-b": "b"}
    (config,) = [d for d in objects if d["metadata"]["name"] == CONFIG_MAP]
    assert config["data"]["INGEST_MONOTONIC_WRITES"] == "true"
    # the rest is what deploy/kubernetes holds
    def others(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [d for d in docs if d["kind"] != "ServiceMonitor" and d["metadata"]["name"] != CONFIG_MAP
                and not (d["kind"] == "Deployment" and _component(d) == "ingest")]

    assert others(objects) == others(_workloads())


def test_each_ha_ingest_probe_judges_the_names_its_own_pod_s_settings_report_under() -> None:
    """``--only own_replicas`` resolved from the pod's environment (the ConfigMap's INGEST_WORKERS,
    the Deployment's INGEST_REPLICA), as its ingest reads it: ``replica_a`` with one process, each
    worker's ``replica_a-w<i>`` with more. ``replica_a`` would never be listed with workers."""
    objects = ha_objects()
    ingests = [d for d in objects if d["kind"] == "Deployment" and _component(d) == "ingest"]
    assert len(ingests) == 2
    for doc in ingests:
        command = _probe(doc, "readinessProbe")["exec"]["command"]
        assert command[command.index("--only") + 1] == OWN_REPLICAS, doc["metadata"]["name"]
        env, errors = _container_env(doc, objects)
        assert errors == []
        assert "INGEST_WORKERS" in env, "the ConfigMap sets the worker count the probe reads"
        replica = env["INGEST_REPLICA"]
        for workers, names in (("1", [replica]), ("2", [f"{replica}-w0", f"{replica}-w1"])):
            settings = load_settings(env={**env, "INGEST_WORKERS": workers})
            assert expand_own([OWN_REPLICAS], settings) == [f"replica_{n}" for n in names], workers


def _label_replica(doc: dict[str, Any], name: str) -> None:
    """Label an ingest's pods (and its selector, which must match them) with replica ``name``."""
    doc["spec"]["selector"]["matchLabels"][INGEST_REPLICA_LABEL] = name
    doc["spec"]["template"]["metadata"]["labels"][INGEST_REPLICA_LABEL] = name


def _rename_to_c(doc: dict[str, Any]) -> None:
    _env(doc, "INGEST_REPLICA")["value"] = "c"
    _label_replica(doc, "c")


HA_A = ("Deployment", "bybit-options-tracker-ingest-a")
HA_B = ("Deployment", "bybit-options-tracker-ingest-b")
HA_BROKEN: dict[str, tuple[tuple[str, str], Breakage, str]] = {
    "monotonic writes off": (CONFIG, lambda d: d["data"].update({"INGEST_MONOTONIC_WRITES": "false"}),
                             "INGEST_MONOTONIC_WRITES must be true"),
    "one replica name twice": (HA_B, lambda d: _env(d, "INGEST_REPLICA").update({"value": "a"}),
                               "INGEST_REPLICA a is written by 2 Deployments"),
    "pods labelled with another replica": (HA_B, lambda d: _label_replica(d, "c"),
                                           "the INGEST_REPLICA they write under"),
    "overlapping selectors": (HA_A, lambda d: d["spec"]["selector"]["matchLabels"].pop(INGEST_REPLICA_LABEL),
                              "selector overlaps the pods of bybit-options-tracker-ingest-b"),
    "probe asks for any replica": (HA_A, lambda d: _probe(d, "readinessProbe")["exec"]["command"].__setitem__(
        4, "ingest_heartbeat"), "mirror compose's health check"),
    "a replica compose does not run": (HA_B, _rename_to_c, "no compose service runs this ingest replica"),
}


@pytest.mark.parametrize("case", sorted(HA_BROKEN))
def test_a_broken_ha_rendering_is_rejected(case: str) -> None:
    """Two ingests need distinct names, their own selectors and probes, and monotonic writes."""
    (kind, name), breakage, reason = HA_BROKEN[case]
    objects = ha_objects()
    (target,) = [d for d in objects if d["kind"] == kind and d["metadata"]["name"] == name]
    breakage(target)
    errors = [e for doc in objects for e in all_errors(doc, objects)]
    assert any(reason in e for e in errors), errors


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


def test_the_cli_renders_two_ingests_and_refuses_names_it_cannot_use(tmp_path: Path) -> None:
    done = _cli("kubernetes", "--out", str(tmp_path), "--ingest-replicas", "a,b")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "workloads.yaml").read_text(encoding="utf-8") == _ha_rendering()
    for names, reason in (("a", "two or more distinct"), ("a,a", "two or more distinct"),
                          ("a,B_1", "lower case letters, digits and -")):
        refused = _cli("kubernetes", "--out", str(tmp_path / "refused"), "--ingest-replicas", names)
        assert refused.returncode == 2, names
        assert reason in refused.stderr, refused.stderr
    assert not (tmp_path / "refused").exists()


def test_the_guide_names_what_the_manifests_use_and_its_links_resolve() -> None:
    """docs/kubernetes.md tells the operator the Secret, the objects and the overrides that exist."""
    guide = ROOT / "docs" / "kubernetes.md"
    text = guide.read_text(encoding="utf-8")
    assert f"kubectl create secret generic {REDIS_SECRET['name']}" in text
    assert f"--from-literal={REDIS_SECRET['key']}=" in text
    for doc in _workloads():
        name = doc["metadata"]["name"]
        assert f"`{name}" in text or f"`-{_component(doc)}`" in text, name
    (deployment, *_) = of_kind("Deployment")
    assert f"- name: {_container(deployment)['image'].split(':')[0]}" in text  # kustomize images:
    assert "--ingest-replicas a,b" in text
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (guide.parent / target).resolve().exists(), target
