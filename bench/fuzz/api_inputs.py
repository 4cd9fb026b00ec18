"""Target 3: hostile paths and queries against ``python -m api``, with Redis ``MONITOR`` watching.

Redis holds a healthy ingest's layout (:class:`tests.fixtures_readers.Layout`); the API runs as
its own process. Requests are drawn by hypothesis: coins (configured, other case, unconfigured,
junk, glob characters ``*?[]``, very long, unicode), symbols (tracked, untracked, another coin's,
malformed, traversal), extra path segments, query strings (known and unknown names, repeated,
empty, huge, negative, NaN, broken percent-encoding) and a few other methods; each segment sent
percent-encoded, partly encoded or raw. Checked for every answer:

- no 5xx (Redis is up: nothing may fail on the server's side);
- every non-2xx answer to a GET is JSON ``{"error": {"code", "message"}}`` with a code of
  :data:`api.errors.CODES`; every JSON answer parses;

and for the whole run, from a raw ``MONITOR`` connection: no write command, no pattern command
(``KEYS``/``SCAN``), every key read is in the documented layout of the configured coins (so no
user string became a key); the keyspace is identical before and after; the API's own
``internal`` error counter is 0.
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson
import redis
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from yarl import URL

from api.errors import CODES
from bench.fuzz.cases import HOSTILE_NUMBERS, HOSTILE_SYMBOLS
from bench.measure import start_http_server
from common import keys
from common.symbols import parse_symbol
from tests.fixtures_readers import Layout, make_symbols
from tests.servers import LOOPBACK, ManagedProcess

COINS: Final = ("BTC", "ETH", "SOL")
PER_COIN: Final = 40
#: aiohttp's request line limit in the API is 16 KiB; past it the parser's own plain 400 answers
#: before the application (documented in docs/api.md), so targets stay below it.
MAX_TARGET: Final = 15_000
CONCURRENCY: Final = 8
EXAMPLES_KEPT: Final = 8

WRITE_COMMANDS: Final = frozenset({
    "SET", "SETEX", "PSETEX", "SETNX", "MSET", "APPEND", "INCR", "INCRBY", "DECR", "GETDEL", "GETEX",
    "GETSET",
    "HSET", "HMSET", "HSETNX", "HDEL", "HINCRBY", "HINCRBYFLOAT", "DEL", "UNLINK", "EXPIRE", "PEXPIRE",
    "EXPIREAT", "PEXPIREAT", "PERSIST", "RENAME", "RENAMENX", "COPY", "MOVE", "RESTORE", "SADD", "SREM",
    "SPOP", "SMOVE", "LPUSH", "RPUSH", "LPOP", "RPOP", "LSET", "LREM", "LTRIM", "ZADD", "ZREM", "ZINCRBY",
    "XADD", "XDEL", "FLUSHDB", "FLUSHALL", "SWAPDB", "EVAL", "EVALSHA", "FCALL", "FUNCTION", "SCRIPT",
    "CONFIG", "PUBLISH",
})
PATTERN_COMMANDS: Final = frozenset({"KEYS", "SCAN", "SSCAN", "HSCAN", "ZSCAN", "PSUBSCRIBE"})
#: Read commands and how many of their first arguments are keys (None: all of them).
KEYED_READS: Final[dict[str, int | None]] = {
    "GET": 1, "MGET": None, "EXISTS": None, "TYPE": 1, "TTL": 1, "PTTL": 1, "HGET": 1, "HMGET": 1,
    "HGETALL": 1, "HKEYS": 1, "HVALS": 1, "HLEN": 1, "HEXISTS": 1, "SMEMBERS": 1, "SCARD": 1,
    "SISMEMBER": 1, "SMISMEMBER": 1, "DUMP": 1, "STRLEN": 1,
}
_ARG: Final = re.compile(r'"((?:[^"\\]|\\.)*)"')


@dataclass
class ApiResult:
    """Target 3's figures."""

    inputs: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)  # error code of each non-2xx answer
    server_errors: list[str] = field(default_factory=list)
    malformed_answers: list[str] = field(default_factory=list)
    transport_failures: Counter[str] = field(default_factory=Counter)
    commands_seen: int = 0
    writes: Counter[str] = field(default_factory=Counter)
    patterns: Counter[str] = field(default_factory=Counter)
    foreign_keys: list[str] = field(default_factory=list)
    keyspace_changed: bool = False
    internal_errors: float = 0.0
    api_running: bool = False
    seconds: float = 0.0

    def keep(self, bucket: list[str], line: str) -> None:
        if len(bucket) < EXAMPLES_KEPT:
            bucket.append(line[:300])


# --- request strategies -------------------------------------------------------------------------

_text = st.text(st.characters(codec="utf-8"), max_size=30)
_glob = st.sampled_from(["*", "?", "[", "]", "[a-z]", "BTC*", "B?C", "[B]TC", "*BTC*", "\\*", "^", "$"])
_long = st.integers(min_value=100, max_value=4000).map(lambda n: "A" * n)


def coin_values(tracked: Sequence[str]) -> st.SearchStrategy[str]:
    del tracked
    configured = st.sampled_from(COINS)
    return st.one_of(  # half of them configured, so the symbol and query checks are reached
        configured, configured, configured, configured, configured, st.sampled_from(COINS).map(str.lower),
        st.sampled_from(["bTc", "Eth", "sOL"]),
        st.sampled_from(["XRP", "DOGE", "MNT", "BTCX", "B", "1", "", "options", "stats", "option:BTC"]),
        _text, _glob, _long, st.sampled_from(["..", ".", "%2e%2e", "BTC/../ETH", "\u0392TC", "\uff22TC"]),
    )


def symbol_values(tracked: Sequence[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(tracked), st.sampled_from(tracked).map(str.lower),
        st.sampled_from(make_symbols("BTC", 5, seed=99, year=26)),  # well-formed, not tracked
        st.sampled_from(HOSTILE_SYMBOLS).filter(lambda s: len(s) < 3000), _text, _glob, _long,
        st.sampled_from(tracked).map(lambda s: s.replace("-", "-*", 1)),
        st.sampled_from(tracked).map(lambda s: s[:-1] + "?"),
    )


_known_names = st.sampled_from(["expiry", "type", "strike_min", "strike_max", "limit", "offset"])
_names = st.one_of(_known_names,
                   st.sampled_from(["Limit", "TYPE", "coin", "symbol", "pattern", "match", "", "limit[]"]),
                   _text)
_values = st.one_of(
    st.sampled_from(["27DEC26", "3JAN27", "C", "P", "c", "0", "1", "10000", "10001", "1000000", "1000001",
                     "95000", "2.5", "-1", "-0", "0.000000001", "99999999999999", "1e5", "+1", " 1"]),
    st.sampled_from(HOSTILE_NUMBERS).filter(lambda s: len(s) < 100), _text, _glob,
    st.integers(min_value=30, max_value=3000).map(lambda n: "9" * n),
)


def _encode(segment: str, how: str) -> str:
    if how == "encoded":
        return urllib.parse.quote(segment, safe="")
    if how == "partly":
        return urllib.parse.quote(segment, safe="*?[]/.:%")
    # raw: printable ASCII as is (glob characters, dots, percent signs, slashes), the rest encoded
    return "".join(c if 0x21 <= ord(c) < 0x7F else urllib.parse.quote(c, safe="") for c in segment)


@st.composite
def requests(draw: st.DrawFn, tracked: Sequence[str]) -> tuple[str, str]:
    """(method, request target): the path and query exactly as sent."""
    how = draw(st.sampled_from(["encoded", "encoded", "partly", "raw"]))
    shape = draw(st.sampled_from(["coin", "params", "params", "symbol", "symbol", "deeper", "fixed",
                                  "random"]))
    coin = draw(coin_values(tracked))
    if shape == "coin":
        path = "/api/options/" + _encode(coin, how)
    elif shape == "params":  # a tracked coin and only known parameter names: the values are checked
        path = "/api/options/" + draw(st.sampled_from(COINS))
    elif shape in ("symbol", "deeper"):
        path = f"/api/options/{_encode(coin, how)}/{_encode(draw(symbol_values(tracked)), how)}"
        if shape == "deeper":
            path += "/" + "/".join(_encode(s, how) for s in draw(st.lists(_text, min_size=1, max_size=3)))
    elif shape == "fixed":
        path = draw(st.sampled_from(["/api/coins", "/healthz", "/readyz", "/openapi.json", "/api/options",
                                     "/api/options/", "/api//options/BTC", "/api/options/BTC/",
                                     "/api/options/../../etc/passwd", "/api/options/%2e%2e/%2e%2e/x",
                                     "//api/options/BTC", "/API/OPTIONS/BTC", "/api/options/BTC%00"]))
    else:
        path = "/" + "/".join(_encode(s, how) for s in draw(st.lists(_text, max_size=4)))
    names = _known_names if shape == "params" else _names
    pairs: list[tuple[str, str, str]] = draw(
        st.lists(st.tuples(names, _values, st.sampled_from(["=", "=", ""])), min_size=shape == "params",
                 max_size=5))
    repeat: bool = draw(st.booleans())
    if pairs and repeat:
        pairs.append(pairs[0])  # a repeated parameter
    query = "&".join(_encode(n, how) + (eq + _encode(v, how) if eq else "") for n, v, eq in pairs)
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        query += draw(st.sampled_from(["&", "&&", "%zz", "%", "=", "limit=%ff", "expiry=%00", "+"]))
    target = path + ("?" + query if query else "")
    method = draw(st.sampled_from(["GET"] * 12 + ["HEAD", "HEAD", "POST", "PUT", "DELETE", "OPTIONS",
                                                  "PATCH"]))
    return method, target[:MAX_TARGET]


# --- Redis: keyspace and MONITOR ------------------------------------------------------------------

def _allowed_key(key: str) -> bool:
    if key in (keys.STATS_GLOBAL, keys.STATS_LAG, keys.INGEST_HEARTBEAT, keys.INGEST_REPLICAS):
        return True
    per_replica = (keys.replica_heartbeat_key(""), keys.replica_stats_key(""), keys.replica_lag_key(""))
    if any(key.startswith(p) and keys.is_valid_replica(key[len(p):]) for p in per_replica):
        return True
    if any(key in (keys.coin_index_key(c), keys.coin_stats_key(c)) for c in COINS):
        return True
    if key.startswith(keys.OPTION_PREFIX):
        parsed = parse_symbol(key[len(keys.OPTION_PREFIX):])
        return parsed is not None and parsed.base in COINS
    return False


def keyspace(client: Any) -> dict[str, Any]:
    """Every key with its type and content (the API is read-only: this must not change)."""
    out: dict[str, Any] = {}
    for key in sorted(client.scan_iter(count=1000)):
        kind = client.type(key)
        if kind == "hash":
            out[key] = ("hash", client.hgetall(key))
        elif kind == "set":
            out[key] = ("set", sorted(client.smembers(key)))
        else:
            out[key] = (kind, client.dump(key))
    return out


class MonitorLog:
    """A raw ``MONITOR`` connection: every command Redis runs, with its arguments, while open."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.commands: list[list[str]] = []

    async def run(self, ready: asyncio.Event, stop: asyncio.Event) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(b"MONITOR\r\n")
            await writer.drain()
            if (await reader.readline()).strip() != b"+OK":
                raise RuntimeError("MONITOR refused")
            ready.set()
            while not stop.is_set():
                try:
                    async with asyncio.timeout(0.2):
                        line = await reader.readline()
                except TimeoutError:
                    continue
                if not line:
                    break
                text = line.decode("utf-8", "replace").rstrip("\r\n")
                self.commands.append([a.encode().decode("unicode_escape") for a in _ARG.findall(text)])
        finally:
            writer.close()
            await writer.wait_closed()

    def check(self, result: ApiResult) -> None:
        for args in self.commands:
            if not args:
                continue
            name = args[0].upper()
            result.commands_seen += 1
            if name in WRITE_COMMANDS:
                result.writes[name] += 1
            if name in PATTERN_COMMANDS:
                result.patterns[name] += 1
            if name in KEYED_READS:
                n = KEYED_READS[name]
                for key in args[1:] if n is None else args[1:1 + n]:
                    if not _allowed_key(key):
                        result.keep(result.foreign_keys, f"{name} {key!r}")


# --- requests -----------------------------------------------------------------------------------

async def _send(session: aiohttp.ClientSession, base: str, method: str, target: str,
                result: ApiResult) -> None:
    url = URL(base + target, encoded=True)
    try:
        async with session.request(method, url, allow_redirects=False) as resp:
            body = await resp.read()
            status = resp.status
            ctype = resp.headers.get("Content-Type", "")
    except (aiohttp.ClientError, TimeoutError) as exc:
        result.transport_failures[type(exc).__name__] += 1
        result.keep(result.malformed_answers, f"{method} {target[:150]!r}: client error {exc!r}")
        return
    result.statuses[status] += 1
    shown = f"{method} {target[:150]!r} -> {status} {body[:150]!r}"
    if status >= 500:
        result.keep(result.server_errors, shown)
    if method == "HEAD":
        return
    doc: Any = None
    if ctype.startswith("application/json"):
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError:
            result.keep(result.malformed_answers, "unparsable JSON: " + shown)
            return
    if 200 <= status < 300:
        return
    error = doc.get("error") if isinstance(doc, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    if code not in CODES or not isinstance(error, dict) or not isinstance(error.get("message"), str):
        result.keep(result.malformed_answers, "no JSON error: " + shown)
        result.codes["<not json>"] += 1
        return
    result.codes[str(code)] += 1


def _internal_errors(metrics_text: str) -> float:
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "bybit_api_errors_total" and sample.labels.get("type") == "internal":
                return float(sample.value)
    return 0.0


async def _fire(base: str, requests_: Sequence[tuple[str, str]], result: ApiResult) -> None:
    queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    for item in requests_:
        queue.put_nowait(item)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout, auto_decompress=True) as session:

        async def worker() -> None:
            while not queue.empty():
                method, target = queue.get_nowait()
                await _send(session, base, method, target, result)

        async with asyncio.TaskGroup() as tg:
            for _ in range(CONCURRENCY):
                tg.create_task(worker())
        async with session.get(base + "/metrics") as resp:
            result.internal_errors = _internal_errors(await resp.text())


def tracked_symbols() -> list[str]:
    return [s for i, coin in enumerate(COINS) for s in make_symbols(coin, PER_COIN, seed=i)]


def run_api(requests_: Sequence[tuple[str, str]], *, redis_port: int, workdir: Path) -> ApiResult:
    """Serve a healthy layout through ``python -m api`` and send it ``requests_``."""
    started = time.monotonic()
    result = ApiResult(inputs=len(requests_))
    redis_url = f"redis://{LOOPBACK}:{redis_port}/0"
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    client.flushdb()
    Layout(client).healthy(now=time.time(), coins=COINS, per_coin=PER_COIN)
    before = keyspace(client)

    def command(port: int) -> tuple[list[str], dict[str, str]]:
        return [sys.executable, "-m", "api"], {
            "API_PORT": str(port), "API_HOST": LOOPBACK, "REDIS_URL": redis_url,
            "BYBIT_COINS": ",".join(COINS), "LOG_FORMAT": "json"}

    api: ManagedProcess
    api, base = start_http_server(command, workdir / "api-fuzz.log")
    monitor = MonitorLog(LOOPBACK, redis_port)

    async def go() -> None:
        ready, stop = asyncio.Event(), asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(monitor.run(ready, stop))
            async with asyncio.timeout(10):
                await ready.wait()
            try:
                await _fire(base, requests_, result)
            finally:
                stop.set()

    try:
        asyncio.run(go())
        result.api_running = api.running
    finally:
        api.stop()
    monitor.check(result)
    result.keyspace_changed = keyspace(client) != before
    client.close()
    result.seconds = time.monotonic() - started
    return result
