"""docker-compose.yml is correct for users who have Docker, checked statically here (no engine).

The structural checks follow the compose specification (compose-spec/compose-spec,
schema/compose-spec.json): the keys allowed at the top level and on a service, and the types
and formats of the ones we use (durations, memory sizes, depends_on conditions).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from common import keys
from common.config import knob_table
from tests.servers import RedisServer, python_env, repo_root

ROOT = repo_root()
COMPOSE = ROOT / "docker-compose.yml"

EXPECTED_SERVICES = {"redis", "ingest", "exporter", "api", "prometheus", "alertmanager", "grafana",
                     "simulator"}
OUR_SERVICES = {"ingest", "exporter", "api", "simulator"}
PUBLISHED = {"grafana": 3000, "api": 5001}

# Keys the compose specification allows at the top level and on a service.
TOP_LEVEL_KEYS = {"version", "name", "include", "services", "models", "networks", "volumes", "secrets",
                  "configs"}
SERVICE_KEYS = {
    "develop", "deploy", "annotations", "attach", "build", "blkio_config", "cap_add", "cap_drop",
    "cgroup", "cgroup_parent", "command", "configs", "container_name", "cpu_count", "cpu_percent",
    "cpu_shares", "cpu_quota", "cpu_period", "cpu_rt_period", "cpu_rt_runtime", "cpus", "cpuset",
    "credential_spec", "depends_on", "device_cgroup_rules", "devices", "dns", "dns_opt", "dns_search",
    "domainname", "entrypoint", "env_file", "label_file", "environment", "expose", "extends",
    "provider", "external_links", "extra_hosts", "gpus", "group_add", "healthcheck", "hostname",
    "image", "init", "ipc", "isolation", "labels", "links", "logging", "mac_address", "mem_limit",
    "mem_reservation", "mem_swappiness", "memswap_limit", "network_mode", "models", "networks",
    "oom_kill_disable", "oom_score_adj", "pid", "pids_limit", "platform", "ports", "post_start",
    "pre_stop", "privileged", "profiles", "pull_policy", "pull_refresh_after", "read_only", "restart",
    "runtime", "scale", "security_opt", "shm_size", "secrets", "sysctls", "stdin_open",
    "stop_grace_period", "stop_signal", "storage_opt", "tmpfs", "tty", "ulimits", "use_api_socket",
    "user", "uts", "userns_mode", "volumes", "volumes_from", "working_dir",
}
HEALTHCHECK_KEYS = {"disable", "interval", "retries", "test", "timeout", "start_period", "start_interval"}
DEPENDS_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
DURATION = re.compile(r"^(\d+(\.\d+)?(us|ms|s|m|h))+$")
MEMORY = re.compile(r"^\d+(\.\d+)?[bkmgBKMG]?$")
NAME = re.compile(r"^[a-zA-Z0-9._-]+$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def _services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services = compose["services"]
    assert isinstance(services, dict)
    return services


def test_top_level_and_service_keys_are_those_of_the_compose_specification(
    compose: dict[str, Any],
) -> None:
    unknown = {k for k in compose if k not in TOP_LEVEL_KEYS and not k.startswith("x-")}
    assert not unknown, f"not compose-spec top-level keys: {unknown}"
    for name, service in _services(compose).items():
        assert NAME.match(name)
        bad = {k for k in service if k not in SERVICE_KEYS and not k.startswith("x-")}
        assert not bad, f"{name}: not compose-spec service keys: {bad}"
        assert isinstance(service.get("image"), str), f"{name}: every service names its image"
        command = service.get("command")
        assert command is None or isinstance(command, str) or (
            isinstance(command, list) and all(isinstance(a, str) for a in command)), name
        env = service.get("environment", {})
        assert isinstance(env, dict)
        for key, value in env.items():
            assert isinstance(value, str | int | float | bool) or value is None, (name, key)
        for port in service.get("ports", []):
            assert isinstance(port, str), port
            assert re.fullmatch(r"(\$\{[A-Z_]+:-\d+\}|\d+):\d+", port), port
        for net in service.get("networks", []):
            assert net in compose["networks"], f"{name}: undeclared network {net}"
        for volume in service.get("volumes", []):
            assert isinstance(volume, str)


def test_the_stack_has_the_contract_service_names_and_the_simulator_only_in_the_demo_profile(
    compose: dict[str, Any],
) -> None:
    services = _services(compose)
    assert set(services) == EXPECTED_SERVICES
    assert services["simulator"]["profiles"] == ["demo"]
    assert all("profiles" not in s for n, s in services.items() if n != "simulator")


def test_every_service_restarts_rotates_json_logs_and_has_a_health_check(compose: dict[str, Any]) -> None:
    for name, service in _services(compose).items():
        assert service["restart"] == "unless-stopped", name
        assert service["logging"] == {
            "driver": "json-file", "options": {"max-size": "100m", "max-file": "3"}}, name
        check = service["healthcheck"]
        assert set(check) <= HEALTHCHECK_KEYS, name
        assert isinstance(check["test"], list), name
        assert check["test"][0] in {"CMD", "CMD-SHELL"}, name
        for key in ("interval", "timeout", "start_period"):
            assert DURATION.match(check[key]), (name, key, check[key])
        assert isinstance(check["retries"], int), name
        assert check["retries"] >= 1, name


def test_log_rotation_is_written_once_as_an_extension_anchor() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    assert re.search(r"^x-logging: &logging$", text, re.MULTILINE)
    assert text.count("max-size") == 1


def test_every_service_has_a_memory_limit_and_python_ones_stay_near_the_100_mb_target(
    compose: dict[str, Any],
) -> None:
    for name, service in _services(compose).items():
        memory = service["deploy"]["resources"]["limits"]["memory"]
        assert isinstance(memory, str), (name, memory)
        assert MEMORY.match(memory), (name, memory)
        if name in {"exporter", "api"}:
            assert memory == "128M", name
        if name == "ingest":
            assert memory == "256M"


def _installed_commands() -> set[str]:
    """The console scripts ``pip install`` puts on the image's PATH (pyproject's [project.scripts])."""
    return set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"])


def test_health_checks_use_tools_present_in_each_image(compose: dict[str, Any]) -> None:
    services = _services(compose)
    for name in OUR_SERVICES:
        test = services[name]["healthcheck"]["test"]
        if test[0] == "CMD-SHELL":  # our image has /bin/sh, Python and the package's commands
            assert shlex.split(test[1])[0] in _installed_commands(), name
        else:
            assert test[:3] == ["CMD", "python", "-c"], name
    assert "redis-cli ping" in " ".join(services["redis"]["healthcheck"]["test"])
    for name in ("prometheus", "alertmanager", "grafana"):
        assert services[name]["healthcheck"]["test"][1] == "wget", name


def test_python_health_check_one_liners_compile(compose: dict[str, Any]) -> None:
    for name in OUR_SERVICES:
        test = _services(compose)[name]["healthcheck"]["test"]
        if test[:3] == ["CMD", "python", "-c"]:
            compile(test[3], f"<{name} healthcheck>", "exec")


def _run_health_check(
    test: list[str], redis_url: str, **container_env: str,
) -> subprocess.CompletedProcess[str]:
    """``test`` as Docker runs it (CMD-SHELL: ``/bin/sh -c``), the project's commands on PATH, in the
    container's environment (``container_env``: the knobs compose sets on the service)."""
    assert test[0] == "CMD-SHELL"
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "bybit-tracker").exists(), "bybit-tracker is not installed: run scripts/setup.sh"
    env = python_env(**container_env, REDIS_URL=redis_url,
                     PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run(["/bin/sh", "-c", test[1]], capture_output=True, text=True, env=env,
                          timeout=60, check=False)


def test_the_ingest_is_healthy_exactly_while_its_heartbeat_is_in_redis(
    compose: dict[str, Any], redis_server: RedisServer,
) -> None:
    test = _services(compose)["ingest"]["healthcheck"]["test"]
    client = redis_server.client()
    heartbeat = keys.replica_heartbeat_key(keys.DEFAULT_REPLICA)

    def beat() -> None:  # what the ingest's reporter writes every stats interval
        client.hset(heartbeat, mapping={keys.F_HB_TS: time.time(), keys.F_HB_PID: 1})
        client.zadd(keys.INGEST_REPLICAS, {keys.DEFAULT_REPLICA: time.time()})

    beat()
    healthy = _run_health_check(test, redis_server.url)
    assert healthy.returncode == 0, (healthy.stdout, healthy.stderr)
    client.delete(heartbeat)  # the heartbeat's TTL ran out: the ingest stopped writing
    dead = _run_health_check(test, redis_server.url)
    assert dead.returncode == 1, (dead.stdout, dead.stderr)  # 1, never the 2 Docker reserves
    assert "nothing writes" in dead.stdout
    # Coins without data, a failing API: not this container's business while the ingest beats.
    beat()
    assert _run_health_check(test, redis_server.url).returncode == 0
    redis_server.stop()
    unreachable = _run_health_check(test, redis_server.url)
    assert unreachable.returncode == 1, unreachable.stdout
    assert "cannot read Redis" in unreachable.stdout


def test_every_image_is_pinned_to_a_version(compose: dict[str, Any]) -> None:
    for name, service in _services(compose).items():
        image = service["image"]
        repo, _, tag = image.rpartition(":")
        assert repo, f"{name}: {image} has no repository"
        assert tag, f"{name}: {image} has no tag"
        assert tag not in {"latest", "stable", "main"}, f"{name}: {image} is not pinned"
        if name not in OUR_SERVICES:
            assert re.match(r"^v?\d+\.\d+\.\d+", tag), f"{name}: {image} is not pinned to x.y.z"


def test_our_services_run_a_real_python_entry_point_of_the_one_image(compose: dict[str, Any]) -> None:
    services = _services(compose)
    images = {services[n]["image"] for n in OUR_SERVICES}
    assert len(images) == 1
    for name in OUR_SERVICES:
        command = services[name]["command"]
        assert command[:2] == ["python", "-m"], name
        module = command[2]
        assert module == name
        assert (ROOT / module / "__main__.py").is_file(), f"{module}/__main__.py does not exist"
        assert services[name]["build"]["context"] == "."


def test_only_grafana_and_the_api_publish_ports(compose: dict[str, Any]) -> None:
    for name, service in _services(compose).items():
        ports = service.get("ports", [])
        if name in PUBLISHED:
            assert len(ports) == 1, name
            assert ports[0].endswith(f":{PUBLISHED[name]}"), name
        else:
            assert not ports, f"{name} must not publish ports (document how to expose it instead)"


def test_services_without_a_need_for_the_outside_stay_on_the_internal_network(
    compose: dict[str, Any],
) -> None:
    networks = compose["networks"]
    assert networks["internal"]["internal"] is True
    for name in ("redis", "exporter", "prometheus", "simulator"):
        assert _services(compose)[name]["networks"] == ["internal"], name


def test_grafana_admin_password_comes_from_the_environment_with_no_default(
    compose: dict[str, Any],
) -> None:
    env = _services(compose)["grafana"]["environment"]
    assert env["GF_SECURITY_ADMIN_PASSWORD"] == "${GRAFANA_ADMIN_PASSWORD:?set GRAFANA_ADMIN_PASSWORD}"
    text = COMPOSE.read_text(encoding="utf-8")
    assert "${GRAFANA_ADMIN_PASSWORD:-" not in text
    assert "${GRAFANA_ADMIN_PASSWORD-" not in text


def test_no_secret_is_written_in_the_file(compose: dict[str, Any]) -> None:
    for name, service in _services(compose).items():
        for key, value in service.get("environment", {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|API_KEY", key):
                assert isinstance(value, str), (name, key)
                assert value.startswith("${"), (name, key)
                assert ":?" in value, (name, key)


def test_every_bind_mounted_path_exists(compose: dict[str, Any]) -> None:
    named = set(compose["volumes"])
    for name, service in _services(compose).items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: mounted {source} does not exist"
            else:
                assert source in named, f"{name}: volume {source} is not declared"


def test_every_tracker_knob_reaches_the_containers(compose: dict[str, Any]) -> None:
    env = compose["x-tracker-env"]
    for name in OUR_SERVICES:
        assert _services(compose)[name]["environment"] == env
    missing = [knob for knob, _default, _doc in knob_table() if knob not in env]
    assert not missing, "knobs not passed to the containers; add to x-tracker-env: " + ", ".join(
        f"{knob}: ${{{knob}:-}}" for knob in missing)
    for knob, value in env.items():
        if knob in {"REDIS_URL"}:
            assert value == "${REDIS_URL:-redis://redis:6379/0}"
        elif knob.endswith(("_HOST", "_PORT")):
            continue
        else:
            # Empty when unset: load_settings then applies the documented default.
            assert value == f"${{{knob}:-}}", knob


def test_the_ingest_is_pointed_at_the_simulator_as_documented(compose: dict[str, Any]) -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    assert "BYBIT_WS_URL=ws://simulator:8765/v5/public/option" in text
    sim = _services(compose)["simulator"]
    assert sim["command"][-2:] == ["--port", "8765"]


def test_redis_caps_memory_with_a_documented_policy_and_snapshots_without_aof(
    compose: dict[str, Any],
) -> None:
    argv = _services(compose)["redis"]["command"]
    args = dict(zip(argv[1::2], argv[2::2], strict=True))
    assert args["--maxmemory"] == "512mb"
    assert args["--maxmemory-policy"] == "volatile-ttl"
    assert args["--appendonly"] == "no"
    assert re.fullmatch(r"\d+ \d+", args["--save"])


def test_dependencies_wait_for_health_where_it_matters(compose: dict[str, Any]) -> None:
    services = _services(compose)
    for name in ("ingest", "exporter", "api"):
        assert services[name]["depends_on"] == {"redis": {"condition": "service_healthy"}}, name
    for name, service in services.items():
        for dep, spec in (service.get("depends_on") or {}).items():
            assert dep in services, (name, dep)
            assert spec["condition"] in DEPENDS_CONDITIONS, (name, dep)


def _prometheus_targets() -> dict[str, list[str]]:
    config = yaml.safe_load((ROOT / "prometheus" / "prometheus.yml").read_text(encoding="utf-8"))
    targets: dict[str, list[str]] = {}
    for job in config["scrape_configs"]:
        for static in job.get("static_configs", []):
            targets.setdefault(job["job_name"], []).extend(static["targets"])
    am = config.get("alerting", {}).get("alertmanagers", [])
    for entry in am:
        for static in entry.get("static_configs", []):
            targets.setdefault("_alerting", []).extend(static["targets"])
    return targets


def test_prometheus_scrape_targets_name_compose_services_on_their_contract_ports(
    compose: dict[str, Any],
) -> None:
    expected = {"exporter": "exporter:9108", "api": "api:5001", "prometheus": "localhost:9090",
                "alertmanager": "alertmanager:9093"}
    targets = _prometheus_targets()
    for job, target in expected.items():
        assert job in targets, f"prometheus.yml has no job {job}"
        host, port = target.split(":")
        hosts = [t.split(":") for t in targets[job]]
        assert any(p == port for _h, p in hosts), (job, targets[job])
        if job != "prometheus":
            assert [host, port] in hosts, (job, targets[job])
            assert host in _services(compose)
    assert "alertmanager:9093" in targets.get("_alerting", []), "Prometheus must send alerts to alertmanager"


def test_alertmanager_gets_every_secret_file_its_config_names(compose: dict[str, Any]) -> None:
    config = (ROOT / "alertmanager" / "alertmanager.yml").read_text(encoding="utf-8")
    named = set(re.findall(r"^[^#\n]*/run/secrets/([A-Za-z0-9_.-]+)", config, re.MULTILINE))
    assert named, "alertmanager.yml names no secret file: nothing to check"
    granted = set(_services(compose)["alertmanager"]["secrets"])
    assert named <= granted, f"secrets alertmanager.yml reads but compose does not mount: {named - granted}"
    assert granted <= set(compose["secrets"])
    for name in granted:
        assert set(compose["secrets"][name]) == {"environment"}, "secret values come from .env, never a file"


def test_prometheus_and_alertmanager_read_the_mounted_config_files(compose: dict[str, Any]) -> None:
    services = _services(compose)
    prom_cfg = next(a for a in services["prometheus"]["command"] if a.startswith("--config.file="))
    assert prom_cfg.endswith("/etc/prometheus/prometheus.yml")
    assert (ROOT / "prometheus" / "prometheus.yml").is_file()
    am_cfg = next(a for a in services["alertmanager"]["command"] if a.startswith("--config.file="))
    assert (ROOT / "alertmanager" / Path(am_cfg.split("=", 1)[1]).name).is_file()


@pytest.mark.parametrize("path", ["docker-compose.yml", "docker-compose.ha.yml"])
def test_alert_links_point_where_readers_are_not_at_a_container_name(path: str) -> None:
    """Without --web.external-url the mails' Query and Alertmanager links name the container id."""
    from tests.test_compose_ha import _load  # compose's YAML, with its !reset tag

    services = _services(_load(ROOT / path))
    engines = {"prometheus": "PROMETHEUS_EXTERNAL_URL", "alertmanager": "ALERTMANAGER_EXTERNAL_URL"}
    checked = 0
    for name, service in services.items():
        engine = next((e for e in engines if name == e or name.startswith(f"{e}-")), None)
        if engine is None or "command" not in service:
            continue
        command = service["command"]
        url = next((a for a in command if a.startswith("--web.external-url=")), None)
        assert url is not None, (name, command)
        assert f"${{{engines[engine]}:-http://localhost:" in url, (name, url)
        assert "--web.route-prefix=/" in command, f"{name}: health checks and scrapes stay at /"
        checked += 1
    assert checked >= 2
    documented = (ROOT / ".env.example").read_text(encoding="utf-8")
    assert all(f"# {env}=http://localhost:" in documented for env in engines.values())
