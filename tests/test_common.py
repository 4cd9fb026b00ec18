"""Shared contracts: symbol validation, key layout, error types, structured logs, entry points."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from pathlib import Path

import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from common import errors, keys
from common.config import ConfigError, Settings
from common.entry import Component
from common.entry import main as component_main
from common.http_log import SERVER_LOGGER
from common.http_service import HttpService
from common.http_service import run as run_http
from common.logs import JsonFormatter, LogThrottle, TextFormatter
from common.symbols import is_valid_coin, is_valid_symbol, parse_symbol
from tests.servers import LOOPBACK, RedisServer, free_port, port_open, repo_root, wait_until


@pytest.mark.parametrize(
    ("symbol", "expiry", "strike", "kind", "settle"),
    [
        ("BTC-27DEC26-100000-C", "27DEC26", "100000", "C", None),
        ("BTC-3JAN27-95000-P-USDT", "3JAN27", "95000", "P", "USDT"),
        ("XRP-29NOV26-2.2-C", "29NOV26", "2.2", "C", None),
        ("SOL-31MAR27-180-P", "31MAR27", "180", "P", None),
    ],
)
def test_bybit_symbol_forms_parse(symbol: str, expiry: str, strike: str, kind: str,
                                  settle: str | None) -> None:
    parsed = parse_symbol(symbol)
    assert parsed is not None
    assert (parsed.expiry, parsed.strike, parsed.kind, parsed.settle) == (expiry, strike, kind, settle)


@pytest.mark.parametrize(
    "hostile",
    ["*", "../x", "BTC-*", "option:*", "BTC-27DEC26-100000-C\n", "BTC-03JAN27-1-C", "btc-27DEC26-1-C",
     "BTC-27DEC26-100000-X", "BTC-32DEC26-1-C", "A" * 10_000, "", "BTC-27DEC26-1-C-USDT-X",
     "BTC-27DEC26-1-C\x00", None, 12, ["BTC-27DEC26-1-C"]],
)
def test_hostile_or_malformed_symbols_are_rejected(hostile: object) -> None:
    assert not is_valid_symbol(hostile)


@given(st.text(max_size=60))
def test_any_accepted_symbol_is_safe_inside_a_redis_key(text: str) -> None:
    if is_valid_symbol(text):
        assert not set(text) & set("*?[]\\ /:\n\r\x00{}")


def test_coins_are_upper_case_alphanumerics() -> None:
    assert is_valid_coin("BTC")
    assert is_valid_coin("1000PEPE")
    assert not any(is_valid_coin(c) for c in ("btc", "*", "B", "BTC:", "B" * 11, None))


def test_key_layout_is_stable() -> None:
    # These strings are read by shell tools, dashboards and other processes.
    assert keys.option_key("BTC-27DEC26-100000-C") == "option:BTC-27DEC26-100000-C"
    assert keys.coin_index_key("BTC") == "options:BTC"
    assert keys.coin_stats_key("ETH") == "stats:coin:ETH"
    assert keys.STATS_GLOBAL == "stats:global"
    assert keys.F_LAST_UPDATE == "last_update"
    assert keys.lag_bucket_field(0.1) == "le:0.1"
    assert list(keys.LAG_BUCKETS) == sorted(keys.LAG_BUCKETS)


def documented_heartbeat_fields() -> list[str]:
    """The heartbeat's fields as docs/ingest.md lists them: ``ingest:heartbeat`` (`a`, `b`, ...)."""
    text = (repo_root() / "docs" / "ingest.md").read_text(encoding="utf-8")
    listed = re.search(r"`ingest:heartbeat` \(([^)]*)\)", text)
    assert listed is not None, "docs/ingest.md no longer lists the heartbeat's fields"
    return re.findall(r"`([a-z_]+)`", listed.group(1).split(", expiring")[0])


def test_the_heartbeat_fields_are_the_documented_ones() -> None:
    assert documented_heartbeat_fields() == list(keys.HEARTBEAT_FIELDS)
    assert len(set(keys.HEARTBEAT_FIELDS)) == len(keys.HEARTBEAT_FIELDS)


async def test_the_ingest_writes_exactly_the_heartbeat_fields_its_readers_read(
    redis_server: RedisServer,
) -> None:
    from exporter.collector import ScrapeContext, SnapshotCollector
    from exporter.snapshot import SnapshotReader
    from exporter.snapshot import make_redis as exporter_redis
    from ingest.stats import ConnectionState, Counters, global_fields, heartbeat_fields
    from ingest.store import Store
    from ingest.store import make_redis as ingest_redis
    from tracker_tools.healthcheck.redis_checks import check_heartbeat, read_snapshot

    now = time.time()
    counters = Counters(coins=("BTC",), started_at=now - 60)
    beat = heartbeat_fields(now=now, pid=4242, rss_bytes=50_000_000, cpu_seconds=1.25,
                            started_at=counters.started_at)
    writer = ingest_redis(redis_server.url, timeout=2.0)
    try:
        failed = await Store(writer, timeout=2.0).write_stats(
            replica=keys.DEFAULT_REPLICA, now=now, legacy=True,
            global_doc=global_fields(counters, ConnectionState(), ttl=86400, pressure=False, pending=0),
            coin_docs={}, lag_doc={keys.LAG_COUNT_FIELD: "0"}, heartbeat_doc=beat, heartbeat_ttl=15.0)
    finally:
        await writer.aclose()
    assert failed == []

    client = redis_server.client()
    assert set(client.hkeys(keys.INGEST_HEARTBEAT)) == set(keys.HEARTBEAT_FIELDS)
    assert set(client.hkeys(keys.replica_heartbeat_key(keys.DEFAULT_REPLICA))) == set(keys.HEARTBEAT_FIELDS)

    reader = exporter_redis(redis_server.url, timeout=2.0)
    try:
        snapshot = await SnapshotReader(reader, coins=("BTC",), timeout=2.0).read()
    finally:
        await reader.aclose()
    ctx = ScrapeContext(coins=("BTC",), now=now + 1, heartbeat_max_age=15.0, capacity_bytes=0)
    collector = SnapshotCollector(snapshot, ctx, exporter_errors={})
    exposed = {m.name: m.samples[0].value for m in collector.collect() if len(m.samples) == 1}
    assert collector.bad_fields == ()
    assert exposed["bybit_ingest_up"] == 1
    assert exposed["bybit_ingest_heartbeat_age_seconds"] == pytest.approx(1.0)
    assert exposed["bybit_ingest_resident_memory_bytes"] == 50_000_000
    assert exposed["bybit_ingest_cpu_seconds"] == 1.25
    assert exposed["bybit_ingest_start_time_seconds"] == pytest.approx(now - 60)

    finding = check_heartbeat(read_snapshot(client, ("BTC",)), now + 1)
    assert finding.severity == "ok"
    assert finding.value == pytest.approx(1.0)


def test_unknown_error_types_collapse_to_other() -> None:
    assert errors.normalise("bad_json") == "bad_json"
    assert errors.normalise("KeyError('x')") == errors.OTHER
    assert len(set(errors.ERROR_TYPES)) == len(errors.ERROR_TYPES)


def _record(**extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("ingest", logging.WARNING, __file__, 1, "frame dropped", None, None)
    for k, v in extra.items():
        setattr(rec, k, v)
    return rec


def test_json_log_lines_carry_context_fields() -> None:
    line = JsonFormatter().format(_record(conn="ws-1", coin="BTC", error_type="bad_json"))
    doc = json.loads(line)
    assert doc["event"] == "frame dropped"
    assert (doc["conn"], doc["coin"], doc["error_type"], doc["level"]) == ("ws-1", "BTC", "bad_json",
                                                                             "warning")
    assert "\n" not in line


def test_text_log_lines_are_key_value() -> None:
    out = TextFormatter().format(_record(conn="ws-1"))
    assert "frame dropped" in out
    assert "conn=ws-1" in out


def test_log_throttle_lets_a_burst_through_then_reports_what_it_held_back() -> None:
    now = [0.0]
    throttle = LogThrottle(period=10, burst=2, clock=lambda: now[0])
    assert [throttle.allow("bad_json")[0] for _ in range(5)] == [True, True, False, False, False]
    assert throttle.allow("bad_symbol") == (True, 0)  # keys are independent
    now[0] = 11.0
    assert throttle.allow("bad_json") == (True, 3)


def test_configure_logging_writes_one_line_per_event(capsys: pytest.CaptureFixture[str]) -> None:
    from common.logs import configure_logging

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging("INFO", "json")
        logging.getLogger("t").info("hello", extra={"coin": "BTC"})
    finally:  # the handler writes to this test's captured stderr, which closes after it
        root.handlers[:], root.level = handlers, level
    err = capsys.readouterr().err.strip().splitlines()
    assert json.loads(err[-1])["coin"] == "BTC"


DEMO = Component(name="demo", description="A component of the tests.", knob_prefixes=("API_CACHE",))


class Serve:
    """A component's serve function that records the settings it was started with."""

    def __init__(self) -> None:
        self.calls: list[Settings] = []

    def __call__(self, settings: Settings) -> int:
        self.calls.append(settings)
        return 0


def test_help_lists_only_the_knobs_the_component_reads(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        component_main(DEMO, lambda _settings: 0, ["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m demo")
    assert "A component of the tests." in out
    assert "API_CACHE_TTL=1.0" in out
    assert "API_PORT" not in out


def test_a_bad_config_file_exits_2_naming_the_knob_and_never_serves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "demo.yaml"
    config.write_text("API_CACHE_TTL: -1\n")
    serve = Serve()
    code = component_main(DEMO, serve, ["--config", str(config)])
    assert code == 2
    assert serve.calls == []
    assert capsys.readouterr().err.startswith("demo: configuration error: API_CACHE_TTL")


def test_a_component_check_that_refuses_the_settings_exits_2_before_serving(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    def refuse(_settings: Settings) -> None:
        raise ConfigError("BYBIT_WS_URL: not a websocket URL")

    config = tmp_path / "demo.yaml"
    config.write_text("API_CACHE_TTL: 2\n")
    serve = Serve()
    code = component_main(DEMO, serve, ["--config", str(config)], check=refuse)
    assert (code, serve.calls) == (2, [])
    assert "demo: configuration error: BYBIT_WS_URL" in capsys.readouterr().err


async def test_an_http_service_serves_counts_parser_refusals_and_cleans_up_when_stopped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    refused: list[int] = []
    cleaned: list[bool] = []

    async def hello(_request: web.Request) -> web.Response:
        return web.Response(text="hello")

    def build() -> web.Application:
        app = web.Application()
        app.router.add_get("/", hello)

        async def cleanup(_app: web.Application) -> None:
            cleaned.append(True)

        app.on_cleanup.append(cleanup)
        return app

    port = free_port()
    service = HttpService(name="demo", host=LOOPBACK, port=port, build_app=build,
                          refused_counter=lambda _app: lambda: refused.append(1),
                          log_context={"coins": ["BTC"]})
    stop = asyncio.Event()
    caplog.set_level(logging.INFO)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(run_http(service, stop=stop))
        await asyncio.to_thread(wait_until, lambda: port_open(port), what="the demo service")
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        writer.write(b"GET /?" + b"A" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        status = await reader.readline()
        writer.close()
        await writer.wait_closed()
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = await reader.read()
        writer.close()
        await writer.wait_closed()
        stop.set()
    assert status.split()[1] == b"400"
    assert answer.split()[1] == b"200"
    assert answer.endswith(b"hello")
    assert refused == [1]
    assert cleaned == [True]
    records = {r.getMessage(): r for r in caplog.records}
    assert records["demo listening"].__dict__["coins"] == ["BTC"]
    assert "demo stopping" in records
    assert records["malformed request refused by the HTTP parser"].exc_info is None
    assert logging.getLogger(SERVER_LOGGER).filters == []
