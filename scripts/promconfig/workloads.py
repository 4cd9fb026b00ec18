"""deploy/kubernetes/workloads.yaml: the tracker itself, as the cluster runs it.

The monitoring objects next to it (ServiceMonitors) scrape Services that nothing else provided;
this module renders them and what they front, from the sources the compose stack uses, so a
port, an env name or the image tag cannot drift between the two:

- ``ConfigMap`` ``bybit-options-tracker-config``: the non-secret knobs, with the defaults of
  common/config.py (names and values read from :class:`common.config.Settings`, never spelled
  here), consumed by every container through ``envFrom``;
- ``REDIS_URL`` from the ``Secret`` ``bybit-options-tracker-redis`` (key ``url``), which is
  never rendered: it holds credentials, and the operator creates it (docs/kubernetes.md);
- one ``Deployment`` per component, ``python -m <component>`` as in docker-compose.yml, the image
  ``<project name>:<project version>`` of pyproject.toml (compose's default tag), the Dockerfile's
  user, the memory limits of compose, probes that mirror compose's health checks;
- a ``Service`` per component serving HTTP, with the port name its ServiceMonitor scrapes and
  the port the component listens on by default (common/config.py);
- a ``PodDisruptionBudget`` for the component that runs more than one replica (the API).

Decisions an operator will ask about (docs/kubernetes.md says the same):

- The ingest runs once, ``strategy: Recreate``: a rolling update would run the old and the new
  pod side by side under one ``INGEST_REPLICA`` name, two writers of one heartbeat and one set of
  counters (counted as ``replica_conflict``) and, without ``INGEST_MONOTONIC_WRITES``, an older
  ticker could replace a newer one. HA (``--ingest-replicas a,b``) renders one Deployment per
  replica name, each its own writer, with ``INGEST_MONOTONIC_WRITES`` on (docs/high-availability.md).
- The ingest has a readiness probe (its heartbeat) and no liveness probe: while Redis is down
  the heartbeat cannot be written, and restarting the ingest then would not bring Redis back but
  would throw away the tickers it holds for Redis and its open subscriptions. A crash exits the
  process and the kubelet restarts it; a stalled ingest pages through IngestDown / NoDataFlowing.
- The exporter runs once: every exporter reports the whole of Redis, so two would double every
  sum the rules take over ``job="exporter"``. The API runs twice: its metrics are per process.
- Readiness of the API is ``/healthz``, not ``/readyz``: ``/readyz`` judges Redis and the data's
  age, the same for every replica, so it takes all of them out at once exactly when each could
  still answer from its cache (the HA failover drill: 14 of 76 requests failed when HAProxy
  checked ``/readyz``; deploy/haproxy/haproxy.cfg).
- ``readOnlyRootFilesystem``: the processes write nothing to disk (logs go to stdout, the image
  sets ``PYTHONDONTWRITEBYTECODE``, ``INGEST_WORKERS`` talks to its workers over pipes); ``/tmp``
  is a small memory-backed ``emptyDir``, as compose mounts a tmpfs there.
- ``enableServiceLinks: false``: otherwise a Service named ``api`` or ``exporter`` in the same
  namespace injects ``API_PORT=tcp://...`` or ``EXPORTER_PORT=tcp://...``, which are knobs, and
  the component would refuse to start on a port that is not a number.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from common import keys
from common.config import Settings
from scripts.promconfig.kubelabels import APP, MONITORED, component_selector, metadata
from scripts.promconfig.thresholds import ROOT
from tracker_tools.cli import PROG as TRACKER_COMMAND
from tracker_tools.healthcheck.command import OWN_REPLICAS

CONFIG_MAP: Final = f"{APP}-config"
REDIS_SECRET: Final = f"{APP}-redis"
REDIS_SECRET_KEY: Final = "url"  # noqa: S105 - the key's name in the Secret, not a credential
#: Pod label: the INGEST_REPLICA the pod writes under (``kubectl get pods -l ...=a``); in the
#: HA rendering also part of each ingest Deployment's selector, so their pods never overlap.
INGEST_REPLICA_LABEL: Final = f"{APP}/ingest-replica"
#: The Dockerfile's ``USER 10001:10001``.
RUN_AS: Final = 10001
HEALTH_PATH: Final = "/healthz"
TMP_VOLUME: Final = "tmp"
TMP_DIR: Final = "/tmp"  # noqa: S108 - the mount point of a pod-private emptyDir, like compose's tmpfs

#: Settings fields whose defaults the ConfigMap carries: the ones an operator is expected to set.
#: Any other knob of common/config.py can be added to the ConfigMap by an overlay.
CONFIG_KNOBS: Final = ("coins", "ws_url", "rest_url", "log_level", "log_format", "redis_sentinels",
                       "redis_sentinel_service", "redis_capacity_bytes", "monotonic_writes", "ingest_workers")
#: A replica name becomes part of a Deployment's name: a DNS label as well as a replica name.
_DNS_LABEL: Final = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


class ReplicaNamesError(ValueError):
    """Ingest replica names that cannot be rendered (the message says which and why)."""


@dataclass(frozen=True, slots=True)
class Component:
    """One tracker process as a Deployment (the name is its module, container and job name)."""

    name: str
    replicas: int
    #: Limit and request: the memory limit of its docker-compose.yml service.
    memory: str
    #: Request only: a CPU limit throttles a latency-sensitive loop, the request reserves its share.
    cpu: str
    #: Settings fields (host, port) it listens by, when it serves HTTP; None: the ingest.
    listen: tuple[str, str] | None = None


INGEST: Final = Component("ingest", replicas=1, memory="256Mi", cpu="250m")
SERVING: Final = (
    Component("exporter", replicas=1, memory="128Mi", cpu="50m", listen=("exporter_host", "exporter_port")),
    Component("api", replicas=2, memory="128Mi", cpu="100m", listen=("api_host", "api_port")),
)


def check_ingest_replicas(names: Sequence[str]) -> tuple[str, ...]:
    """Names for the HA rendering: two or more, distinct, each a replica name and a DNS label."""
    if len(names) < 2 or len(set(names)) != len(names):
        raise ReplicaNamesError(f"ingest replicas {list(names)}: give two or more distinct names")
    bad = [n for n in names if not keys.is_valid_replica(n) or not _DNS_LABEL.fullmatch(n)]
    if bad:
        raise ReplicaNamesError(f"ingest replicas {bad}: lower case letters, digits and -, at most 32 "
                                "characters, starting and ending with a letter or digit")
    return tuple(names)


def _project() -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return project


def image() -> str:
    """The image compose builds by default: ``<project name>:<project version>``."""
    project = _project()
    return f"{project['name']}:{project['version']}"


def env_name(field: str) -> str:
    """The environment name of a Settings field (KeyError for a field that does not exist)."""
    env: str = {f.name: f for f in dataclasses.fields(Settings)}[field].metadata["env"]
    return env


def default_text(field: str) -> str:
    """A Settings field's default as the environment spells it (load_settings parses it back)."""
    return _text(getattr(Settings(), field))


def _text(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def listen_port(component: Component) -> int:
    """The port ``component`` listens on by default (common/config.py)."""
    if component.listen is None:
        raise ValueError(f"{component.name} serves no HTTP")
    port: int = getattr(Settings(), component.listen[1])
    return port


def config_map(*, several_ingests: bool = False) -> dict[str, Any]:
    """The non-secret knobs every component reads, at their documented defaults.

    Several ingests writing one Redis need monotonic writes (docs/high-availability.md).
    """
    data = {env_name(f): default_text(f) for f in CONFIG_KNOBS}
    if several_ingests:
        data[env_name("monotonic_writes")] = _text(True)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(CONFIG_MAP, component="config"),
            "data": data}


def _env(pinned: Mapping[str, str]) -> list[dict[str, Any]]:
    """REDIS_URL from the Secret, then what this container pins (Settings field -> value).

    ``env`` wins over ``envFrom``: a port set in the ConfigMap cannot move the listener away from
    the port the probes and the Service use.
    """
    redis = {"name": env_name("redis_url"),
             "valueFrom": {"secretKeyRef": {"name": REDIS_SECRET, "key": REDIS_SECRET_KEY}}}
    return [redis, *({"name": env_name(f), "value": value} for f, value in pinned.items())]


def ingest_check(replica: str | None) -> list[str]:
    """The ingest's health check as compose runs it, without its ``|| exit 1`` (Kubernetes takes
    any non-zero exit as a failure; Docker reserves the critical tier's 2).

    One ingest: is any replica writing (``ingest_heartbeat``). Several: is this one writing, as
    docker-compose.ha.yml asks, since ``ingest_heartbeat`` stays ok while the other replica writes:
    ``own_replicas``, the names the pod's own INGEST_REPLICA and INGEST_WORKERS report under
    (``replica_a``, or ``replica_a-w0``, ... with workers, when ``replica_a`` is never listed).
    """
    only = OWN_REPLICAS if replica else "ingest_heartbeat"
    return [TRACKER_COMMAND, "healthcheck", "--no-api", "--only", only, "--timeout", "3"]


def _http_probe(port: str, **timing: int) -> dict[str, Any]:
    return {"httpGet": {"path": HEALTH_PATH, "port": port}, **timing}


def _probes(component: Component, replica: str | None) -> dict[str, Any]:
    """Liveness where a restart helps (a process that stopped answering HTTP), readiness always.

    The timing of the probe that mirrors compose's health check is compose's: 15 s interval,
    5 s timeout, 3 retries (and the start period as the liveness probe's initial delay).
    """
    if component.listen is None:
        return {"readinessProbe": {"exec": {"command": ingest_check(replica)}, "initialDelaySeconds": 5,
                                   "periodSeconds": 15, "timeoutSeconds": 5, "failureThreshold": 3}}
    port = MONITORED[component.name][0]
    return {"readinessProbe": _http_probe(port, periodSeconds=5, timeoutSeconds=4, failureThreshold=2),
            "livenessProbe": _http_probe(port, initialDelaySeconds=15, periodSeconds=15, timeoutSeconds=5,
                                         failureThreshold=3)}


def _pinned(component: Component, replica: str | None) -> dict[str, str]:
    """The knobs this container sets itself: the ingest its replica name, a server its address."""
    if component.listen is None:
        return {"ingest_replica": replica or default_text("ingest_replica")}
    return {field: default_text(field) for field in component.listen}


def _container(component: Component, replica: str | None) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": component.name,
        "image": image(),
        "imagePullPolicy": "IfNotPresent",
        "command": ["python", "-m", component.name],
        "envFrom": [{"configMapRef": {"name": CONFIG_MAP}}],
        "env": _env(_pinned(component, replica)),
    }
    if component.listen is not None:
        container["ports"] = [{"name": MONITORED[component.name][0], "containerPort": listen_port(component),
                               "protocol": "TCP"}]
    return {
        **container,
        **_probes(component, replica),
        "resources": {"requests": {"cpu": component.cpu, "memory": component.memory},
                      "limits": {"memory": component.memory}},
        "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]}},
        "volumeMounts": [{"name": TMP_VOLUME, "mountPath": TMP_DIR}],
    }


def _pod_spec(component: Component, replica: str | None) -> dict[str, Any]:
    """Non-root as the Dockerfile, no API token (the tracker never calls the Kubernetes API)."""
    spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {"runAsNonRoot": True, "runAsUser": RUN_AS, "runAsGroup": RUN_AS,
                            "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [_container(component, replica)],
        "volumes": [{"name": TMP_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}],
    }
    if component.replicas > 1:  # spread the replicas over nodes when the cluster has several
        spec["topologySpreadConstraints"] = [{
            "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": component_selector(component.name)}}]
    return spec


def _strategy(component: Component) -> dict[str, Any]:
    """Recreate for the ingest (one writer per replica name); otherwise never fewer pods than asked."""
    if component.listen is None:
        return {"type": "Recreate"}
    return {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}


def _labels(component: Component, replica: str | None) -> tuple[dict[str, str], dict[str, str]]:
    """(selector, extra labels of the Deployment and its pods): an ingest is labelled with its
    replica name, and in the HA rendering selected by it too."""
    selector = component_selector(component.name)
    if component.listen is not None:
        return selector, {}
    named = {INGEST_REPLICA_LABEL: replica or default_text("ingest_replica")}
    return ({**selector, **named} if replica else selector), named


def deployment(component: Component, *, replica: str | None = None) -> dict[str, Any]:
    """``component``'s Deployment; ``replica`` names one ingest of several (the HA rendering)."""
    name = f"{APP}-{component.name}" + (f"-{replica}" if replica else "")
    selector, extra = _labels(component, replica)
    pod_labels = {**selector, **extra, "app.kubernetes.io/part-of": APP}
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": metadata(name, component=component.name, extra=extra),
            "spec": {"replicas": component.replicas, "strategy": _strategy(component),
                     "selector": {"matchLabels": selector},
                     "template": {"metadata": {"labels": pod_labels}, "spec": _pod_spec(component, replica)}}}


def service(component: Component) -> dict[str, Any]:
    """The Service its ServiceMonitor selects: the monitored port name, the listening port."""
    port = MONITORED[component.name][0]
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": metadata(f"{APP}-{component.name}", component=component.name),
            "spec": {"type": "ClusterIP", "selector": component_selector(component.name),
                     "ports": [{"name": port, "port": listen_port(component), "targetPort": port,
                                "protocol": "TCP"}]}}


def disruption_budget(component: Component) -> dict[str, Any]:
    """A node drain takes one replica at a time (none for single replicas: it would block drains)."""
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": metadata(f"{APP}-{component.name}", component=component.name),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": component_selector(component.name)}}}


def workload_objects(ingest_replicas: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Everything workloads.yaml holds, in the order a plain ``kubectl apply -f`` wants it.

    ``ingest_replicas``: empty for one ingest (replica ``main``), else the names of the HA
    rendering's ingests (:func:`check_ingest_replicas`), one Deployment each.
    """
    names = check_ingest_replicas(ingest_replicas) if ingest_replicas else ()
    ingests = [deployment(INGEST, replica=r) for r in names] or [deployment(INGEST)]
    return [config_map(several_ingests=bool(names)),
            *(service(c) for c in SERVING),
            *ingests,
            *(deployment(c) for c in SERVING),
            *(disruption_budget(c) for c in SERVING if c.replicas > 1)]
