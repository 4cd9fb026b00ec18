"""docker-compose.ha.yml, merged over docker-compose.yml as `docker compose -f ... -f ...` does,
is a correct stack with two Prometheus replicas and two meshed Alertmanagers; checked statically
(no Docker engine here), and so are the HA Prometheus configs it mounts.

The merge follows the compose specification's rules for the keys these files use (mappings
merge key by key, ``command`` is replaced, sequences such as ``cap_drop`` and ``networks`` are
merged, ``volumes`` are merged by their path in the container); YAML anchors and ``<<`` merge
keys are resolved by the YAML loader, as compose's is.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.promconfig.alertmanager_config import load_source
from scripts.promconfig.prometheus_config import (
    HA_REPLICAS,
    REPLICA_LABEL,
    ha_file,
    render_ha_configs,
)
from tests.servers import promtool, repo_root
from tests.test_compose import (
    DEPENDS_CONDITIONS,
    DURATION,
    HEALTHCHECK_KEYS,
    MEMORY,
    SERVICE_KEYS,
    TOP_LEVEL_KEYS,
)

ROOT = repo_root()
BASE = ROOT / "docker-compose.yml"
HA = ROOT / "docker-compose.ha.yml"
PROMETHEUS_SERVICES = ("prometheus", "prometheus-b")
ALERTMANAGER_SERVICES = ("alertmanager", "alertmanager-b")
MONITORING = (*PROMETHEUS_SERVICES, *ALERTMANAGER_SERVICES)
CLUSTER_PORT = "9094"
#: Sequences that an override replaces instead of merging.
REPLACED = {"command", "entrypoint", "test"}


def _load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def _volume_target(volume: str) -> str:
    return volume.split(":")[1]


def _merge(base: Any, override: Any, key: str = "") -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, v in override.items():
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


def test_the_override_uses_compose_keys_and_adds_exactly_the_second_replicas(
    override: dict[str, Any], merged: dict[str, Any],
) -> None:
    assert not {k for k in override if k not in TOP_LEVEL_KEYS and not k.startswith("x-")}
    assert override["name"] == _load(BASE)["name"], "the same project, so it overrides the stack"
    for name, service in _services(override).items():
        assert not {k for k in service if k not in SERVICE_KEYS and not k.startswith("x-")}, name
    assert set(_services(merged)) == set(_services(_load(BASE))) | {"prometheus-b", "alertmanager-b"}
    assert set(_services(override)) == set(MONITORING), \
        "only the monitoring pairs; other HA services come later"


def test_every_monitoring_service_is_complete_non_root_and_unprivileged(merged: dict[str, Any]) -> None:
    services = _services(merged)
    for name in MONITORING:
        service = services[name]
        assert service["restart"] == "unless-stopped", name
        assert service["logging"] == {"driver": "json-file", "options": {"max-size": "100m", "max-file": "3"}}
        check = service["healthcheck"]
        assert set(check) <= HEALTHCHECK_KEYS, name
        assert check["test"][:2] == ["CMD", "wget"], name
        for key in ("interval", "timeout", "start_period"):
            assert DURATION.match(check[key]), (name, key)
        assert MEMORY.match(service["deploy"]["resources"]["limits"]["memory"]), name
        assert service["user"] == "65534:65534", f"{name} must run as nobody, not root"
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert not service.get("ports"), f"{name} must not publish ports"
        for net in service["networks"]:
            assert net in merged["networks"], (name, net)
        for volume in service["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), (name, source)
            else:
                assert source in merged["volumes"], (name, source)
        for dep, spec in (service.get("depends_on") or {}).items():
            assert dep in services, (name, dep)
            assert spec["condition"] in DEPENDS_CONDITIONS, (name, dep)


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
