"""The HA topology as supervised local processes on loopback: ``scripts/run --ha``.

The same processes as ``docker-compose.ha.yml``, from Debian's packages: a Redis primary and
replica under three sentinels (``redis-sentinel``, config rendered from deploy/redis/sentinel.conf),
the simulator, two ingest replicas writing through the monotonic Redis Function, the exporter on
Sentinel, two API replicas behind HAProxy (deploy/haproxy/haproxy.cfg, on the API's usual port
5001), two Prometheus replicas and two meshed Alertmanagers. :func:`build_ha_services` is the one
description of that topology; ``python -m bench.drill_failover`` runs it too, with alert timers
scaled and notifications sent to a loopback webhook, and SIGKILLs its processes one by one.

Nothing here decides a failover: Sentinel promotes, redis-py follows, HAProxy routes around a dead
API, the Alertmanagers gossip. This module only writes their configs and starts them, and
:class:`~scripts.localstack.Supervisor` restarts whatever dies.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import re
import shutil
import signal
import socket
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from common.config import Settings
from scripts.localstack import LOOPBACK, ROOT, Service, Supervisor, announce, port_in_use

log = logging.getLogger("hastack")

SENTINEL_TEMPLATE = ROOT / "deploy" / "redis" / "sentinel.conf"
#: Starts a data node as the replica of the primary Sentinel names (why: in the script).
START_NODE = ROOT / "deploy" / "redis" / "start-node.sh"
HAPROXY_CONFIG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
#: The service the sentinels monitor: the components' REDIS_SENTINEL_SERVICE default.
SENTINEL_SERVICE = Settings().redis_sentinel_service
#: redis-server flags of both data nodes, as docker-compose.yml gives its single Redis (why: there).
REDIS_DATA_ARGS: tuple[str, ...] = ("--maxmemory", "512mb", "--maxmemory-policy", "volatile-ttl",
                                    "--save", "300 1", "--appendonly", "no")
#: Replica names: ``a`` and ``b`` of every pair (INGEST_REPLICA, the Prometheus ``replica`` label).
REPLICAS: tuple[str, str] = ("a", "b")
SENTINELS: tuple[str, str, str] = ("sentinel-1", "sentinel-2", "sentinel-3")


@dataclass(frozen=True, slots=True)
class HaPorts:
    """Where each process of the HA stack listens; the defaults keep the single stack's known ports."""

    redis_a: int = 6379
    redis_b: int = 6380
    sentinel_1: int = 26379
    sentinel_2: int = 26380
    sentinel_3: int = 26381
    simulator: int = 8765
    exporter: int = 9108
    haproxy: int = 5001  # the API's address for users, as in the single stack
    haproxy_stats: int = 8404
    api_a: int = 5002
    api_b: int = 5003
    prometheus_a: int = 9090
    prometheus_b: int = 9091
    alertmanager_a: int = 9093
    alertmanager_b: int = 9095
    cluster_a: int = 9094
    cluster_b: int = 9096

    @classmethod
    def free(cls) -> HaPorts:
        """Ports the kernel hands out now (for tests and the drill, beside anything running)."""
        socks = []
        try:
            for _ in dataclasses.fields(cls):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.bind((LOOPBACK, 0))
                socks.append(s)
            return cls(*(s.getsockname()[1] for s in socks))
        finally:
            for s in socks:
                s.close()

    def sentinels(self) -> tuple[int, int, int]:
        return (self.sentinel_1, self.sentinel_2, self.sentinel_3)

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class HaOptions:
    """What may differ between ``scripts/run --ha`` (the defaults) and the failover drill."""

    coins: str = "BTC,ETH,SOL"
    live: bool = False
    #: Sentinel timers; None keeps deploy/redis/sentinel.conf's.
    down_after_ms: int | None = None
    failover_timeout_ms: int | None = None
    simulator_args: tuple[str, ...] = ()
    #: Knobs (environment names) for every tracker process, and for the ingest replicas only.
    tracker_env: Mapping[str, str] = field(default_factory=dict)
    ingest_env: Mapping[str, str] = field(default_factory=dict)
    #: Alert rules Prometheus loads (``DIR/*.yml``); None: the committed prometheus/rules.
    rules_dir: Path | None = None
    scrape_interval: str = "15s"
    #: Where every Alertmanager receiver posts; None: nowhere (the alerts show in the UI).
    webhook_url: str | None = None
    alertmanager_timing_scale: float = 1.0
    alertmanager_args: tuple[str, ...] = ()


def sentinel_config(template: str, *, port: int, primary: tuple[str, int], workdir: Path,
                    down_after_ms: int | None = None, failover_timeout_ms: int | None = None) -> str:
    """deploy/redis/sentinel.conf for one loopback sentinel: its port, the primary's address, a dir.

    Every other line (quorum, hostnames, parallel syncs) is the shipped file's, so the loopback
    stack and the drill run the deployment's Sentinel settings, timers only when asked.
    """
    host, primary_port = primary
    out = [f"bind {LOOPBACK}", f"dir {workdir}"]
    for raw in template.splitlines():
        words = raw.split()
        if not words or words[0].startswith("#"):
            continue
        line = raw
        if words[0] == "port":
            line = f"port {port}"
        elif words[:2] == ["sentinel", "monitor"]:
            line = f"sentinel monitor {words[2]} {host} {primary_port} {words[5]}"
        elif words[:2] == ["sentinel", "down-after-milliseconds"] and down_after_ms is not None:
            line = f"sentinel down-after-milliseconds {words[2]} {down_after_ms}"
        elif words[:2] == ["sentinel", "failover-timeout"] and failover_timeout_ms is not None:
            line = f"sentinel failover-timeout {words[2]} {failover_timeout_ms}"
        out.append(line)
    return "\n".join(out) + "\n"


def monitored_service(template: str) -> str:
    """The service name of the template's ``sentinel monitor`` line."""
    match = re.search(r"^sentinel monitor (\S+) ", template, re.MULTILINE)
    if match is None:
        raise ValueError("no 'sentinel monitor' line in the Sentinel config")
    return match.group(1)


def _down_after_ms(template: str) -> int:
    """The template's ``sentinel down-after-milliseconds``."""
    match = re.search(r"^sentinel down-after-milliseconds \S+ (\d+)", template, re.MULTILINE)
    if match is None:
        raise ValueError("no 'sentinel down-after-milliseconds' line in the Sentinel config")
    return int(match.group(1))


def _binary(*names: str) -> str:
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    raise FileNotFoundError(f"none of {', '.join(names)} is installed (scripts/setup.sh installs them)")


def build_ha_services(ports: HaPorts, var: Path, options: HaOptions = HaOptions()) -> list[Service]:
    """Every process of the HA stack, in start order, with its config files written under ``var``.

    Configs are rewritten on every call (a fresh stack starts with redis-a as primary); within one
    run Sentinel rewrites its own files, so a restarted sentinel remembers the failovers it saw.
    """
    py = sys.executable
    var.mkdir(parents=True, exist_ok=True)
    redis_server = _binary("redis-server")
    template = SENTINEL_TEMPLATE.read_text(encoding="utf-8")
    service_name = monitored_service(template)
    sentinels = ",".join(f"{LOOPBACK}:{p}" for p in ports.sentinels())
    services: list[Service] = []
    down_after_s = (options.down_after_ms or _down_after_ms(template)) / 1000
    node_wait = f"{max(10, round(4 * down_after_s))}"
    for replica, port in zip(REPLICAS, (ports.redis_a, ports.redis_b), strict=True):
        data = var / f"redis-{replica}"
        data.mkdir(parents=True, exist_ok=True)
        # A fresh stack (fresh sentinels): the node starts in its configured role (start-node.sh).
        (data / ".started").unlink(missing_ok=True)
        follow = ["--replicaof", LOOPBACK, str(ports.redis_a)] if replica == "b" else []
        services.append(Service(f"redis-{replica}", [
            "sh", str(START_NODE), LOOPBACK, str(port), sentinels, service_name, node_wait, str(data), "--",
            redis_server, "--port", str(port), "--bind", LOOPBACK, "--dir", str(data),
            *REDIS_DATA_ARGS, *follow], url=f"redis://{LOOPBACK}:{port}/0"))
    sentinel_bin = shutil.which("redis-sentinel")
    for name, port in zip(SENTINELS, ports.sentinels(), strict=True):
        workdir = var / name
        workdir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "sentinel.conf"
        conf.write_text(sentinel_config(template, port=port, primary=(LOOPBACK, ports.redis_a),
                                        workdir=workdir, down_after_ms=options.down_after_ms,
                                        failover_timeout_ms=options.failover_timeout_ms), encoding="utf-8")
        argv = [sentinel_bin, str(conf)] if sentinel_bin else [redis_server, str(conf), "--sentinel"]
        services.append(Service(name, argv, url=f"redis://{LOOPBACK}:{port} (sentinel)"))
    if options.live:
        upstream = {"BYBIT_WS_URL": "wss://stream.bybit.com/v5/public/option",
                    "BYBIT_REST_URL": "https://api.bybit.com"}
    else:
        services.append(Service("simulator", [
            py, "-m", "simulator", "--host", LOOPBACK, "--port", str(ports.simulator),
            "--coins", options.coins, *options.simulator_args,
        ], url=f"http://{LOOPBACK}:{ports.simulator}/control/state"))
        upstream = {"BYBIT_WS_URL": f"ws://{LOOPBACK}:{ports.simulator}/v5/public/option",
                    "BYBIT_REST_URL": f"http://{LOOPBACK}:{ports.simulator}"}
    # REDIS_URL's host and port are not used under Sentinel; it still names the database.
    common_env = {"REDIS_URL": f"redis://{LOOPBACK}:{ports.redis_a}/0", "REDIS_SENTINELS": sentinels,
                  "REDIS_SENTINEL_SERVICE": service_name, "BYBIT_COINS": options.coins,
                  "LOG_FORMAT": "json", **options.tracker_env}
    for replica in REPLICAS:
        services.append(Service(f"ingest-{replica}", [py, "-m", "ingest"], env={
            **common_env, **upstream, "INGEST_MONOTONIC_WRITES": "true", "INGEST_REPLICA": replica,
            **options.ingest_env}))
    services.append(Service("exporter", [py, "-m", "exporter"], env={
        **common_env, "EXPORTER_HOST": LOOPBACK, "EXPORTER_PORT": str(ports.exporter)},
        url=f"http://{LOOPBACK}:{ports.exporter}/metrics"))
    for replica, port in zip(REPLICAS, (ports.api_a, ports.api_b), strict=True):
        services.append(Service(f"api-{replica}", [py, "-m", "api"], env={
            **common_env, "API_HOST": LOOPBACK, "API_PORT": str(port)},
            url=f"http://{LOOPBACK}:{port}/readyz"))
    services.append(Service("haproxy", [_binary("haproxy"), "-db", "-f", str(HAPROXY_CONFIG)], env={
        "HAPROXY_BIND": f"{LOOPBACK}:{ports.haproxy}",
        "HAPROXY_STATS_BIND": f"{LOOPBACK}:{ports.haproxy_stats}",
        "API_A": f"{LOOPBACK}:{ports.api_a}", "API_B": f"{LOOPBACK}:{ports.api_b}"},
        url=f"http://{LOOPBACK}:{ports.haproxy}/api/options/BTC"))
    services += monitoring_pair(ports, var, options)
    return services


def monitoring_pair(ports: HaPorts, var: Path, options: HaOptions) -> list[Service]:
    """Prometheus a and b (scraping both APIs, alerting both Alertmanagers) and the Alertmanager mesh."""
    from scripts import promconfig
    from scripts.promconfig.prometheus_config import Targets, render_prometheus_config
    from scripts.promconfig.rules import RULES_DIR

    prom_bin = _binary("prometheus")
    am_bin = _binary("prometheus-alertmanager", "alertmanager")
    monitoring = var / "monitoring"
    monitoring.mkdir(parents=True, exist_ok=True)
    rules = (options.rules_dir or RULES_DIR).resolve()
    managers = (f"{LOOPBACK}:{ports.alertmanager_a}", f"{LOOPBACK}:{ports.alertmanager_b}")
    targets = Targets(exporter=f"{LOOPBACK}:{ports.exporter}",
                      api=(f"{LOOPBACK}:{ports.api_a}", f"{LOOPBACK}:{ports.api_b}"),
                      prometheus=(f"{LOOPBACK}:{ports.prometheus_a}", f"{LOOPBACK}:{ports.prometheus_b}"),
                      alertmanager=managers, haproxy=f"{LOOPBACK}:{ports.haproxy_stats}")
    out: list[Service] = []
    for replica, port in zip(REPLICAS, (ports.prometheus_a, ports.prometheus_b), strict=True):
        config = monitoring / f"prometheus-{replica}.yml"
        config.write_text(render_prometheus_config(
            targets, scrape_interval=options.scrape_interval, evaluation_interval=options.scrape_interval,
            rule_files=(str(rules / "*.yml"),), replica=replica,
            header=f"Generated by scripts.hastack: HA replica {replica} on loopback."), encoding="utf-8")
        out.append(Service(f"prometheus-{replica}", [
            prom_bin, f"--config.file={config}", f"--storage.tsdb.path={var / f'prometheus-{replica}'}",
            f"--web.listen-address={LOOPBACK}:{port}", "--web.enable-lifecycle",
            "--storage.tsdb.retention.time=2d",
        ], url=f"http://{LOOPBACK}:{port}", pages=("/alerts", "/classic/alerts"), ready="/-/ready"))
    am_yml = promconfig.write_local_alertmanager_config(
        monitoring, webhook_url=options.webhook_url, timing_scale=options.alertmanager_timing_scale)
    pairs = ((REPLICAS[0], ports.alertmanager_a, ports.cluster_a, ports.cluster_b),
             (REPLICAS[1], ports.alertmanager_b, ports.cluster_b, ports.cluster_a))
    for replica, port, gossip, peer in pairs:
        out.append(Service(f"alertmanager-{replica}", [
            am_bin, f"--config.file={am_yml}", f"--storage.path={var / f'alertmanager-{replica}'}",
            f"--web.listen-address={LOOPBACK}:{port}", f"--cluster.listen-address={LOOPBACK}:{gossip}",
            f"--cluster.peer={LOOPBACK}:{peer}", *options.alertmanager_args,
        ], url=f"http://{LOOPBACK}:{port}"))
    return out


def _missing_binaries() -> list[str]:
    wanted = {"redis-server": ("redis-server",), "haproxy": ("haproxy",), "prometheus": ("prometheus",),
              "alertmanager": ("prometheus-alertmanager", "alertmanager")}
    return [name for name, names in wanted.items() if not any(shutil.which(n) for n in names)]


async def ha_main(args: argparse.Namespace) -> int:
    """``scripts/run --ha``: start the HA stack, print where it answers, stop it on Ctrl-C."""
    missing = _missing_binaries()
    if missing:
        print(f"not installed: {', '.join(missing)} (scripts/setup.sh installs them)", file=sys.stderr)
        return 2
    ports = HaPorts.free() if args.any_ports else HaPorts()
    busy = [f"{n} port {p}" for n, p in ports.as_dict().items()
            if (n != "simulator" or not args.live) and port_in_use(p)]
    if busy:
        print(f"in use already: {', '.join(busy)}. Stop what listens there, or pass --any-ports.",
              file=sys.stderr)
        return 2
    var: Path = args.var / "ha"
    (var / "log").mkdir(parents=True, exist_ok=True)
    services = build_ha_services(ports, var, HaOptions(coins=args.coins, live=args.live))
    (var / "hastack.json").write_text(json.dumps({"ports": ports.as_dict()}), encoding="utf-8")
    supervisor = Supervisor(services, var / "log", state_file=var / "localstack.json")
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, supervisor.stop)
    print("Bybit options tracker, HA stack on loopback (" + ("LIVE Bybit" if args.live else "simulator")
          + f"); the API through HAProxy on port {ports.haproxy}, state in {var / 'hastack.json'}:",
          flush=True)
    if args.duration > 0:
        loop.call_later(args.duration, supervisor.stop)
    async with asyncio.TaskGroup() as tg:
        listing = tg.create_task(announce(services, var))
        await supervisor.run()
        listing.cancel()
    print("stopped; restarts: " + ", ".join(f"{k}={v}" for k, v in supervisor.restarts.items()))
    return 0
