"""docker-compose.ha.yml, merged over docker-compose.yml as `docker compose -f ... -f ...` does,
is a correct HA stack: Redis primary + replica under three sentinels, two ingest replicas, two APIs
behind HAProxy, two Prometheus replicas and two meshed Alertmanagers; checked statically (no Docker
engine here), and so are the HA Prometheus configs, the Sentinel config and the HAProxy config it
mounts.

The merge follows the compose specification's rules for the keys these files use (mappings
merge key by key, ``command`` is replaced, sequences such as ``cap_drop`` and ``networks`` are
merged, ``volumes`` are merged by their path in the container); YAML anchors and ``<<`` merge
keys are resolved by the YAML loader, as compose's is; ``!reset`` removes the key it tags.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from common import keys
from common.config import Settings
from scripts.hastack import REDIS_DATA_ARGS, monitored_service
from scripts.promconfig.alertmanager_config import load_source
from scripts.promconfig.prometheus_config import (
    HA_REPLICAS,
    REPLICA_LABEL,
    ha_file,
    render_ha_configs,
)
from tests.servers import RedisServer, promtool, repo_root
from tests.test_compose import (
    DEPENDS_CONDITIONS,
    DURATION,
    HEALTHCHECK_KEYS,
    MEMORY,
    SERVICE_KEYS,
    TOP_LEVEL_KEYS,
    _run_health_check,
)

ROOT = repo_root()
BASE = ROOT / "docker-compose.yml"
HA = ROOT / "docker-compose.ha.yml"
PROMETHEUS_SERVICES = ("prometheus", "prometheus-b")
ALERTMANAGER_SERVICES = ("alertmanager", "alertmanager-b")
MONITORING = (*PROMETHEUS_SERVICES, *ALERTMANAGER_SERVICES)
REDIS_NODES = ("redis", "redis-b")
SENTINEL_SERVICES = ("sentinel-1", "sentinel-2", "sentinel-3")
INGEST_SERVICES = ("ingest", "ingest-b")
API_SERVICES = ("api", "api-b")
HA_ADDED = {"prometheus-b", "alertmanager-b", "redis-b", *SENTINEL_SERVICES, "ingest-b", "api-b", "haproxy"}
TRACKER_IMAGE = "bybit-options-tracker:${TRACKER_VERSION:-0.1.0}"
#: Knobs whose value the HA override decides (the rest pass through as in docker-compose.yml).
HA_KNOBS = {"REDIS_SENTINELS", "REDIS_SENTINEL_SERVICE", "INGEST_MONOTONIC_WRITES", "INGEST_REPLICA"}
SENTINEL_PORT = 26379
CLUSTER_PORT = "9094"
#: Sequences that an override replaces instead of merging.
REPLACED = {"command", "entrypoint", "test"}


class _Reset:
    """Compose's ``!reset``: the tagged key is removed from the merged model."""


RESET = _Reset()


class _ComposeLoader(yaml.SafeLoader):
    """YAML as compose reads it, with its ``!reset`` tag."""


_ComposeLoader.add_constructor("!reset", lambda _loader, _node: RESET)


def _load(path: Path) -> dict[str, Any]:
    doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_ComposeLoader)
    assert isinstance(doc, dict)
    return doc


def _volume_target(volume: str) -> str:
    return volume.split(":")[1]


def _merge(base: Any, override: Any, key: str = "") -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, v in override.items():
            if v is RESET:
                out.pop(k, None)
            else:
                out[k] = _merge(base[k], v, k) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(override, list) and key not in REPLACED:
        if key == "volumes":
            by_target = {_volume_target(v): v for v in base}
            by_target.update({_volume_target(v): v for v in override})
            return list(by_target.values())
        return base + [v for v in override if v not in base]
    return copy.deepcopy(override)


@pytest.fixture(scope="module")
def override() -> dict[str, Any]:
    return _load(HA)


@pytest.fixture(scope="module")
def merged(override: dict[str, Any]) -> dict[str, Any]:
    stack: dict[str, Any] = _merge(_load(BASE), override)
    return stack


def _services(stack: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = stack["services"]
    return services


def _flags(service: dict[str, Any], flag: str) -> list[str]:
    return [a.split("=", 1)[1] for a in service["command"] if a.startswith(f"{flag}=")]


def test_the_merge_follows_the_compose_rules_it_relies_on() -> None:
    base = {"command": ["a", "b"], "cap_drop": ["ALL"], "volumes": ["./x:/etc/x:ro", "d:/data"],
            "depends_on": {"one": {"condition": "service_started"}}, "user": "0"}
    over = {"command": ["c"], "cap_drop": ["ALL", "NET_RAW"], "volumes": ["e:/data"],
            "depends_on": {"two": {"condition": "service_started"}}, "user": "65534:65534"}
    assert _merge(base, over) == {
        "command": ["c"], "cap_drop": ["ALL", "NET_RAW"], "volumes": ["./x:/etc/x:ro", "e:/data"],
        "depends_on": {"one": {"condition": "service_started"}, "two": {"condition": "service_started"}},
        "user": "65534:65534"}


def test_reset_removes_what_the_base_file_sets() -> None:
    assert _merge({"ports": ["5001:5001"], "image": "x"}, {"ports": RESET}) == {"image": "x"}


def test_the_override_uses_compose_keys_and_adds_exactly_the_ha_replicas(
    override: dict[str, Any], merged: dict[str, Any],
) -> None:
    assert not {k for k in override if k not in TOP_LEVEL_KEYS and not k.startswith("x-")}
    assert override["name"] == _load(BASE)["name"], "the same project, so it overrides the stack"
    for name, service in _services(override).items():
        assert not {k for k in service if k not in SERVICE_KEYS and not k.startswith("x-")}, name
    assert set(_services(merged)) == set(_services(_load(BASE))) | HA_ADDED


def _runs_as_non_root(service: dict[str, Any]) -> bool:
    user = str(service.get("user", ""))
    if user:
        return user.split(":", maxsplit=1)[0] not in ("0", "root")
    # Our image: the Dockerfile's USER (tests/test_dockerfile.py pins it to a non-root uid).
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    final_user = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)[-1]
    return bool(service.get("image") == TRACKER_IMAGE and final_user.split(":")[0] not in ("0", "root"))


def test_every_ha_service_is_complete_non_root_unprivileged_and_wired_to_what_exists(
    override: dict[str, Any], merged: dict[str, Any],
) -> None:
    services = _services(merged)
    for name in _services(override):
        service = services[name]
        assert service["restart"] == "unless-stopped", name
        assert service["logging"] == {"driver": "json-file", "options": {"max-size": "100m", "max-file": "3"}}
        check = service["healthcheck"]
        assert set(check) <= HEALTHCHECK_KEYS, name
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        for key in ("interval", "timeout", "start_period"):
            assert DURATION.match(check[key]), (name, key)
        assert MEMORY.match(service["deploy"]["resources"]["limits"]["memory"]), name
        assert _runs_as_non_root(service), f"{name} must not run as root"
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        for net in service["networks"]:
            assert net in merged["networks"], (name, net)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), (name, source)
            else:
                assert source in merged["volumes"], (name, source)
        for dep, spec in (service.get("depends_on") or {}).items():
            assert dep in services, (name, dep)
            assert spec["condition"] in DEPENDS_CONDITIONS, (name, dep)
    data = [v.split(":")[0] for s in services.values() for v in s.get("volumes", [])
            if not v.startswith(".")]
    assert len(data) == len(set(data)), "no two services share a data volume"


def test_only_haproxy_and_grafana_publish_and_haproxy_takes_the_api_port(merged: dict[str, Any]) -> None:
    services = _services(merged)
    published = {name for name, s in services.items() if s.get("ports")}
    assert published == {"haproxy", "grafana"}
    assert services["haproxy"]["ports"] == _services(_load(BASE))["api"]["ports"], "users keep :5001"
    assert "egress" in services["haproxy"]["networks"], "a published port needs a network with a gateway"


def test_tracker_env_passes_every_knob_as_the_base_file_does_with_ha_values(override: dict[str, Any]) -> None:
    base_env = _load(BASE)["x-tracker-env"]
    ha_env = override["x-tracker-env"]
    passed_through = {k: v for k, v in base_env.items() if k not in HA_KNOBS}
    assert {k: v for k, v in ha_env.items() if k not in HA_KNOBS} == passed_through, "as docker-compose.yml"
    assert ha_env["INGEST_MONOTONIC_WRITES"] == "true"
    service = Settings().redis_sentinel_service
    assert ha_env["REDIS_SENTINEL_SERVICE"] == f"${{REDIS_SENTINEL_SERVICE:-{service}}}"
    default = ha_env["REDIS_SENTINELS"].removeprefix("${REDIS_SENTINELS:-").removesuffix("}")
    assert default == ",".join(f"{s}:{SENTINEL_PORT}" for s in SENTINEL_SERVICES)


def test_every_tracker_service_reads_knobs_that_exist_and_finds_redis_through_the_sentinels(
    override: dict[str, Any], merged: dict[str, Any],
) -> None:
    knobs = {f.metadata["env"] for f in dataclasses.fields(Settings)}
    services = _services(merged)
    trackers = [n for n, s in services.items() if s.get("image") == TRACKER_IMAGE and not s.get("profiles")]
    assert set(trackers) == {*INGEST_SERVICES, *API_SERVICES, "exporter"}
    sentinels = override["x-tracker-env"]["REDIS_SENTINELS"]
    for name in trackers:
        env = services[name]["environment"]
        unknown = set(env) - knobs
        assert not unknown, f"{name} sets knobs common/config.py does not have: {unknown}"
        assert env["REDIS_SENTINELS"] == sentinels, name
        for dep in SENTINEL_SERVICES:
            assert services[name]["depends_on"][dep]["condition"] == "service_healthy", (name, dep)
    replicas = [services[n]["environment"]["INGEST_REPLICA"] for n in INGEST_SERVICES]
    assert replicas == ["a", "b"], "each ingest replica has its own name"
    for name in INGEST_SERVICES:
        check = services[name]["healthcheck"]["test"][-1]
        # Resolved from the container's INGEST_REPLICA and INGEST_WORKERS: its own replica's
        # heartbeats (each worker's with INGEST_WORKERS > 1), not the other replica's.
        assert "--only own_replicas " in check, f"{name} judges its own heartbeats, not the other's"
        assert services[name]["environment"]["INGEST_WORKERS"] == "${INGEST_WORKERS:-}", (
            "the health check sees the worker count the ingest runs with")
    for a, b in (INGEST_SERVICES, API_SERVICES):
        for key in ("image", "command", "deploy", "read_only", "cap_drop"):
            assert services[a][key] == services[b][key], (a, b, key)
        for key in ("interval", "timeout", "retries", "start_period"):
            assert services[a]["healthcheck"][key] == services[b]["healthcheck"][key], (a, b, key)


def _command_after(service: dict[str, Any], marker: str) -> list[str]:
    command: list[str] = service["command"]
    return command[command.index(marker) + 1:]


def test_the_redis_nodes_start_through_sentinel_as_the_loopback_stack_does(
    override: dict[str, Any], merged: dict[str, Any],
) -> None:
    services = _services(merged)
    for name in REDIS_NODES:
        node = services[name]
        assert node["image"].startswith("redis:"), name
        assert "alpine" not in node["image"], "the Debian-based official image"
        script, host, port, sentinels, service, _wait, data = node["command"][1:8]
        assert (script, host, port, data) == ("/etc/redis-ha/start-node.sh", name, "6379", "/data")
        assert "./deploy/redis:/etc/redis-ha:ro" in node["volumes"]
        assert sentinels == override["x-tracker-env"]["REDIS_SENTINELS"]
        assert service == override["x-tracker-env"]["REDIS_SENTINEL_SERVICE"]
        server = _command_after(node, "--")
        assert server[0] == "redis-server"
        args = server[1:]
        for flag, value in zip(REDIS_DATA_ARGS[::2], REDIS_DATA_ARGS[1::2], strict=True):
            assert args[args.index(flag) + 1] == value, (name, flag)
        assert args[args.index("--replica-announce-ip") + 1] == name, "announced by name, as Sentinel is told"
        assert any(v.endswith(":/data") for v in node["volumes"]), name
    replica = _command_after(services["redis-b"], "--")
    at = replica.index("--replicaof")
    assert replica[at + 1:at + 3] == ["redis", "6379"]
    assert "--replicaof" not in _command_after(services["redis"], "--")


def test_the_sentinels_monitor_the_primary_service_under_the_name_the_components_ask_for(
    merged: dict[str, Any],
) -> None:
    services = _services(merged)
    template = (ROOT / "deploy" / "redis" / "sentinel.conf").read_text(encoding="utf-8")
    assert monitored_service(template) == Settings().redis_sentinel_service
    (monitor,) = re.findall(r"^sentinel monitor \S+ (\S+) (\d+) (\d+)$", template, re.MULTILINE)
    host, port, quorum = monitor
    assert (host, port) == ("redis", "6379"), "the primary service, by name"
    assert len(SENTINEL_SERVICES) // 2 < int(quorum) <= len(SENTINEL_SERVICES), "a majority, not all"
    assert re.search(rf"^port {SENTINEL_PORT}$", template, re.MULTILINE)
    assert re.search(r"^sentinel resolve-hostnames yes$", template, re.MULTILINE)
    for name in SENTINEL_SERVICES:
        sentinel = services[name]
        script = sentinel["command"][-1]
        assert "cp /etc/redis-ha/sentinel.conf /data/sentinel.conf" in script, "a writable copy of its own"
        assert f"sentinel announce-ip {name}" in script
        assert script.rstrip().endswith("exec redis-server /data/sentinel.conf --sentinel")
        assert f"{name}-data:/data" in sentinel["volumes"]


def test_haproxy_balances_exactly_the_api_services_with_the_shipped_config(merged: dict[str, Any]) -> None:
    services = _services(merged)
    lb = services["haproxy"]
    assert lb["image"].startswith("haproxy:")
    (mount,) = [v for v in lb["volumes"] if v.startswith("./deploy/haproxy:")]
    target = mount.split(":")[1]
    assert lb["command"][-1] == f"{target}/haproxy.cfg"
    config = (ROOT / "deploy" / "haproxy" / "haproxy.cfg").read_text(encoding="utf-8")
    named = re.findall(r'^\s*server \S+ "\$\{(\w+)\}"', config, re.MULTILINE)
    assert named, "servers come from the environment"
    env = lb["environment"]
    assert {env[var] for var in named} == {f"{api}:5001" for api in API_SERVICES}
    for var in ("HAPROXY_BIND", "HAPROXY_STATS_BIND"):
        assert f'"${{{var}}}"' in config
    assert env["HAPROXY_BIND"] == ":" + lb["ports"][0].rsplit(":", 1)[1]
    assert set(lb["depends_on"]) == set(API_SERVICES)


def test_the_b_replicas_are_the_a_replicas_but_for_their_config_and_data(merged: dict[str, Any]) -> None:
    services = _services(merged)
    for a, b in (PROMETHEUS_SERVICES, ALERTMANAGER_SERVICES):
        for key in ("image", "networks", "healthcheck", "deploy", "restart", "secrets", "user"):
            assert services[a].get(key) == services[b].get(key), (a, b, key)
        config_a = [v for v in services[a]["volumes"] if v.startswith("./")]
        assert config_a == [v for v in services[b]["volumes"] if v.startswith("./")], "the same files mounted"
        data = {v.split(":")[0] for s in (a, b) for v in services[s]["volumes"] if not v.startswith("./")}
        assert len(data) == 2, f"{a} and {b} must not share a data volume: {data}"


def test_the_prometheus_replicas_read_the_ha_configs_and_notify_both_alertmanagers(
    merged: dict[str, Any],
) -> None:
    services = _services(merged)
    labels = []
    for replica, name in zip(HA_REPLICAS, PROMETHEUS_SERVICES, strict=True):
        (config,) = _flags(services[name], "--config.file")
        assert services[name]["volumes"][0] == "./prometheus:/etc/prometheus:ro"
        local = ROOT / "prometheus" / Path(config).relative_to("/etc/prometheus")
        assert local == ha_file(replica)
        doc = _load(local)
        labels.append(doc["global"]["external_labels"][REPLICA_LABEL])
        (managers,) = doc["alerting"]["alertmanagers"]
        targets = [t for s in managers["static_configs"] for t in s["targets"]]
        assert sorted(targets) == sorted(f"{am}:9093" for am in ALERTMANAGER_SERVICES)
        for job in doc["scrape_configs"]:
            for target in (t for s in job["static_configs"] for t in s["targets"]):
                assert target.split(":")[0] in services, (name, job["job_name"], target)
        assert {"prometheus-b:9090", "prometheus:9090"} <= {
            t for j in doc["scrape_configs"] if j["job_name"] == "prometheus"
            for s in j["static_configs"] for t in s["targets"]}, "each replica scrapes both"
        assert "alertmanager-b" in services[name]["depends_on"]
    assert labels == list(HA_REPLICAS), "distinct replica labels"


def test_the_alertmanagers_mesh_with_each_other_and_share_one_config(merged: dict[str, Any]) -> None:
    services = _services(merged)
    configs = set()
    for name in ALERTMANAGER_SERVICES:
        (peer,) = (other for other in ALERTMANAGER_SERVICES if other != name)
        assert _flags(services[name], "--cluster.listen-address") == [f"0.0.0.0:{CLUSTER_PORT}"], name
        assert _flags(services[name], "--cluster.peer") == [f"{peer}:{CLUSTER_PORT}"], name
        configs.update(_flags(services[name], "--config.file"))
    assert configs == {"/etc/alertmanager/alertmanager.yml"}, "peers must route alike: one config"
    source = (ROOT / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8")
    named = set(re.findall(r"^[^#\n]*/run/secrets/([A-Za-z0-9_.-]+)", source, re.MULTILINE))
    assert named <= set(services["alertmanager-b"]["secrets"])
    assert load_source()["route"]["routes"][0]["receiver"] == "deadmans-switch"


def test_the_ha_configs_are_generated_and_promtool_accepts_them() -> None:
    for path, text in render_ha_configs().items():
        stale = f"{path} is stale: python -m scripts.promconfig render"
        assert path.read_text(encoding="utf-8") == text, stale
        done = promtool("check", "config", str(path))
        assert done.returncode == 0, done.stdout + done.stderr
        rule_files = len(list((ROOT / "prometheus" / "rules").glob("*.yml")))
        assert f"SUCCESS: {rule_files} rule files found" in done.stdout, "rules resolve from prometheus/ha/"
        doc = yaml.safe_load(text)
        assert doc["alerting"]["alert_relabel_configs"] == [{"action": "labeldrop", "regex": REPLICA_LABEL}]


def test_operations_guide_documents_the_ha_stack() -> None:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    assert "## HA monitoring" in text
    assert "docker compose -f docker-compose.yml -f docker-compose.ha.yml" in text
    for path in ("prometheus/ha/prometheus-a.yml", "tests/test_monitoring_ha.py", "docker-compose.ha.yml"):
        assert path in text
        assert (ROOT / path).exists(), path


@pytest.mark.parametrize("workers", [1, 2])
def test_each_ingest_container_is_healthy_exactly_while_its_own_replica_writes(
    merged: dict[str, Any], redis_server: RedisServer, workers: int,
) -> None:
    """With INGEST_WORKERS > 1 each worker reports as ``<replica>-w<i>`` and the replica's own name
    is never listed: the container is healthy while all of its workers write, and only then."""
    services = _services(merged)
    client = redis_server.client()

    def names(replica: str) -> list[str]:
        return [replica] if workers == 1 else [f"{replica}-w{i}" for i in range(workers)]

    def beat(replica: str) -> None:
        at = time.time()
        client.zadd(keys.INGEST_REPLICAS, {replica: at})
        client.hset(keys.replica_heartbeat_key(replica), mapping={keys.F_HB_TS: at, keys.F_HB_PID: 1})

    def healthy(service: str) -> bool:
        # The container's own knobs, INGEST_WORKERS as `${INGEST_WORKERS:-}` passes it from .env.
        env = {"INGEST_REPLICA": services[service]["environment"]["INGEST_REPLICA"],
               "INGEST_WORKERS": str(workers)}
        done = _run_health_check(services[service]["healthcheck"]["test"], redis_server.url, **env)
        assert done.returncode in (0, 1), (done.stdout, done.stderr)  # never the 2 Docker reserves
        return done.returncode == 0

    for name in (*names("a"), *names("b")):
        beat(name)
    assert healthy("ingest")
    assert healthy("ingest-b")
    client.delete(keys.replica_heartbeat_key(names("b")[-1]))  # b (or its last worker) died; a writes
    assert healthy("ingest"), "a replica is not unhealthy because the other one died"
    assert not healthy("ingest-b"), "the dead replica's own container is unhealthy"
    if workers > 1:
        client.zrem(keys.INGEST_REPLICAS, names("b")[-1])  # never started: not listed at all
        assert not healthy("ingest-b"), "a worker that never reported is not healthy either"
