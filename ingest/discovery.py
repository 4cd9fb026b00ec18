"""Instrument discovery over Bybit's REST API, paced by its rate-limit answers.

``GET /v5/market/instruments-info?category=option&baseCoin=<COIN>&limit=<n>`` for each
coin, following ``nextPageCursor`` until it is empty, missing or null (market/instrument).

The cursor is opaque and Bybit hands it out already percent-encoded (``0%2C500``,
``first%3DBIOUSDT%26last%3DBIOUSDT``): it goes back in the query string exactly as received, as
Bybit's own SDK sends it. Encoding it again (``0%252C500``) is a different cursor to the exchange.

For options Bybit lists ``PreLaunch``, ``Trading`` and ``Delivering`` instruments by default.
``Trading`` and ``Delivering`` ones are streamed (a delivering option still quotes until it is
delivered, and its last ticker is what users ask for); ``PreLaunch`` ones are left for the refresh
that sees them trading, so no topic sits silent and stale. ``ONLINE`` is the pre-launch (2022) V5
docs' name for trading. Kept symbols must also be well-formed (:mod:`common.symbols`) and of the
requested coin. ``retCode != 0`` is an error even with HTTP 200 (``retMsg`` is shown, never
interpreted: its wording varies); rate-limit answers (retCode 10006/10018, HTTP 403, HTTP 429) go
through :class:`~ingest.ratelimit.RestRateLimiter` and the call is retried after its pause.

:class:`Discovery` runs the loop: at start it retries with backoff until every coin
is known (streaming the coins already known meanwhile) — a worker that cannot reach
REST at boot waits, it does not crash; then it refreshes every ``refresh_interval``
seconds, and a coin whose refresh fails keeps its current set.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import quote

import aiohttp
import orjson
from yarl import URL

from common import errors
from common.logs import LogThrottle
from common.symbols import parse_symbol
from ingest.backoff import Backoff
from ingest.ratelimit import RATE_LIMIT_RET_CODES, RestRateLimiter
from ingest.stats import Counters

log = logging.getLogger("ingest.discovery")

INSTRUMENTS_PATH: Final = "/v5/market/instruments-info"
MAX_PAGES: Final = 1000  # 1,000 pages of 1,000 instruments: far past any real listing
MAX_RATE_LIMITED_RETRIES: Final = 50  # per call; then the call fails (and discovery retries later)
#: Instrument statuses whose tickers are streamed (see the module docstring).
STREAMED_STATUSES: Final = frozenset({"Trading", "Delivering", "ONLINE"})
#: Text that may go into a query string as it is: unreserved and sub-delimiter characters other than
#: the ones that would split the query (``&``, ``=``, ``+``, ``#``), and complete ``%XX`` escapes.
_QUERY_SAFE: Final = re.compile(r"(?:[A-Za-z0-9\-._~!$'()*,;:@/?]|%[0-9A-Fa-f]{2})*")


def query_value(value: str) -> str:
    """``value`` as it goes into the query string: unchanged when it is already URL-safe.

    Bybit's cursors arrive percent-encoded and must go back byte for byte; anything else (a raw
    ``&`` or space, a lone ``%``) is percent-encoded so it cannot change the query's structure.
    """
    return value if _QUERY_SAFE.fullmatch(value) else quote(value, safe="")


class RestError(Exception):
    """A REST call failed; ``error_type`` is :data:`common.errors.REST_ERROR` or ``REST_RATE_LIMITED``."""

    def __init__(self, error_type: str, detail: str) -> None:
        super().__init__(detail)
        self.error_type = error_type


class InstrumentsClient:
    """Lists one coin's trading option symbols, every page, within Bybit's rate limits."""

    def __init__(self, session: aiohttp.ClientSession, *, base_url: str, limiter: RestRateLimiter,
                 counters: Counters, page_limit: int, timeout: float) -> None:
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.limiter = limiter
        self.counters = counters
        self.page_limit = page_limit
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._throttle = LogThrottle(period=30.0, burst=3)

    async def symbols(self, coin: str) -> set[str]:
        """Every streamed (trading or delivering) symbol of ``coin``."""
        found: set[str] = set()
        cursor = ""
        seen: set[str] = set()
        for _page in range(MAX_PAGES):
            params = {"category": "option", "baseCoin": coin, "limit": str(self.page_limit)}
            if cursor:
                params["cursor"] = cursor
            result = await self._get(INSTRUMENTS_PATH, params)
            items = result.get("list")
            if not isinstance(items, list):
                raise RestError(errors.REST_ERROR, "result.list is not a list")
            for item in items:
                self._take(coin, item, found)
            cursor_value = result.get("nextPageCursor")
            cursor = cursor_value if isinstance(cursor_value, str) else ""
            if not cursor:
                return found
            if cursor in seen:
                raise RestError(errors.REST_ERROR, "nextPageCursor repeats")
            seen.add(cursor)
        raise RestError(errors.REST_ERROR, f"more than {MAX_PAGES} pages")

    def _take(self, coin: str, item: object, found: set[str]) -> None:
        if not isinstance(item, dict) or item.get("status") not in STREAMED_STATUSES:
            return
        parsed = parse_symbol(item.get("symbol"))
        if parsed is None or parsed.base != coin:
            self.counters.error(errors.BAD_SYMBOL)
            allowed, suppressed = self._throttle.allow("bad_symbol")
            if allowed:
                shown = item.get("symbol")
                log.warning("instrument ignored", extra={
                    "coin": coin, "error_type": errors.BAD_SYMBOL, "suppressed": suppressed,
                    "symbol": shown[:60] if isinstance(shown, str) else type(shown).__name__})
            return
        found.add(parsed.symbol)

    async def _get(self, path: str, params: Mapping[str, str]) -> dict[str, Any]:
        """One call's ``result``, retried through rate-limit answers."""
        for _ in range(MAX_RATE_LIMITED_RETRIES):
            wait = self.limiter.wait_time()
            if wait > 0:
                await asyncio.sleep(wait)
            self.counters.rest_requests += 1
            try:
                query = "&".join(f"{name}={query_value(value)}" for name, value in params.items())
                url = URL(f"{self.base_url}{path}?{query}", encoded=True)
                async with self.session.get(url, timeout=self.timeout) as resp:
                    body = await resp.read()
                    status, headers = resp.status, resp.headers
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise RestError(errors.REST_ERROR, f"{path}: {exc!r}") from exc
            if status in (403, 429):
                self._rate_limited(status, headers, f"HTTP {status}")
                continue
            if status != 200:
                raise RestError(errors.REST_ERROR, f"{path}: HTTP {status}")
            try:
                doc = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise RestError(errors.REST_ERROR, f"{path}: body is not JSON") from exc
            if not isinstance(doc, dict):
                raise RestError(errors.REST_ERROR, f"{path}: body is not an object")
            ret_code = doc.get("retCode")
            if ret_code in RATE_LIMIT_RET_CODES:
                self._rate_limited(status, headers, f"retCode {ret_code}")
                continue
            if ret_code != 0:
                ret_msg = doc.get("retMsg")
                shown = ret_msg[:200] if isinstance(ret_msg, str) else ""
                raise RestError(errors.REST_ERROR, f"{path}: retCode {ret_code!r} {shown}")
            result = doc.get("result")
            if not isinstance(result, dict):
                raise RestError(errors.REST_ERROR, f"{path}: result is not an object")
            self.limiter.on_success(headers)
            return result
        raise RestError(errors.REST_RATE_LIMITED, f"{path}: still rate limited after "
                                                  f"{MAX_RATE_LIMITED_RETRIES} tries")

    def _rate_limited(self, status: int, headers: Mapping[str, str], what: str) -> None:
        self.counters.rest_rate_limited += 1
        self.counters.error(errors.REST_RATE_LIMITED)
        wait = self.limiter.on_rate_limited(status=status, headers=headers)
        allowed, suppressed = self._throttle.allow("rate_limited")
        if allowed:
            log.warning("rest rate limited", extra={
                "error_type": errors.REST_RATE_LIMITED, "answer": what, "pause": round(wait, 3),
                "suppressed": suppressed})


class Discovery:
    """Initial discovery (retried until it succeeds) and the refresh timer."""

    def __init__(self, client: InstrumentsClient, *, coins: tuple[str, ...], refresh_interval: float,
                 retry_cap: float, on_universe: Callable[[dict[str, set[str]]], None],
                 counters: Counters) -> None:
        self.client = client
        self.coins = coins
        self.refresh_interval = refresh_interval
        self.retry_cap = retry_cap
        self.on_universe = on_universe
        self.counters = counters
        self.known: set[str] = set()  # coins discovered at least once

    async def fetch(self, coins: tuple[str, ...] | list[str]) -> dict[str, set[str]]:
        """The symbols of each coin whose discovery succeeded (failures are counted and logged)."""
        got: dict[str, set[str]] = {}
        for coin in coins:
            try:
                got[coin] = await self.client.symbols(coin)
            except RestError as exc:
                self.counters.error(exc.error_type)
                log.warning("discovery failed", extra={"coin": coin, "error_type": exc.error_type,
                                                       "detail": str(exc)[:300]})
        return got

    async def run(self) -> None:
        """Discover every coin (a coin never discovered yet is retried with backoff), then refresh.

        A coin that keeps failing never holds the others back: the known coins are refreshed
        on their timer while the missing one is retried.
        """
        backoff = Backoff(cap=self.retry_cap)
        loop = asyncio.get_running_loop()
        next_refresh = loop.time() + self.refresh_interval
        while True:
            missing = [c for c in self.coins if c not in self.known]
            if missing:
                got = await self.fetch(missing)
                if got:
                    self.known.update(got)
                    self.on_universe(got)
                    log.info("instruments discovered", extra={"symbols": {c: len(s) for c, s in got.items()}})
            if loop.time() >= next_refresh:
                known = [c for c in self.coins if c in self.known]
                got = await self.fetch(known)
                if got:
                    self.on_universe(got)
                next_refresh = loop.time() + self.refresh_interval
            if any(c not in self.known for c in self.coins):
                wait = min(backoff.next_delay(), max(0.0, next_refresh - loop.time()))
            else:
                backoff.reset()
                wait = max(0.0, next_refresh - loop.time())
            await asyncio.sleep(wait)
