"""What a live check saw, as a table and a verdict (pure).

``python -m ingest --check`` (:mod:`ingest.check`) runs the ingest's own discovery and
connections against the configured exchange for a few seconds and fills a
:class:`CheckReport`; this module only judges it. The rule is the ingest's own: anything
the running worker would count in ``errors:<type>`` (a frame rejected, a topic refused, a
connection dropped, a REST call rate limited) is a reason to fail, and so is what the
counters cannot show — topics never confirmed, a stream that sent no ticker, pings no pong
answered. A user who runs the check before deploying wants "would this worker be healthy
here?", so one rejected frame in twenty seconds is already worth a FAIL with its name: it
becomes an error rate on the dashboard later.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from common import errors

#: Error types of single frames (see common.errors): they make the "frames rejected" row.
FRAME_ERRORS: Final[tuple[str, ...]] = (
    errors.BAD_JSON, errors.BAD_TYPE, errors.MISSING_FIELD, errors.BAD_NUMBER, errors.BAD_SYMBOL,
    errors.UNSUBSCRIBED_SYMBOL, errors.BAD_TIMESTAMP, errors.TOPIC_MISMATCH, errors.FRAME_TOO_LARGE,
    errors.UNKNOWN_MESSAGE,
)
#: What each connection error means, for the verdict line (``{n}`` is the count).
_CONNECTION_REASONS: Final[dict[str, str]] = {
    errors.SUBSCRIBE_FAILED: "subscribe refused {n}",
    errors.SUBSCRIBE_UNANSWERED: "subscribe request unanswered {n}",
    errors.PONG_TIMEOUT: "connection declared dead {n}: no pong within the ping timeout",
    errors.DATA_TIMEOUT: "connection declared dead {n}: no ticker within the data timeout",
    errors.WS_CLOSED: "connection dropped {n}",
    errors.WS_CONNECT: "could not connect, {n}",
}
_WIDTH: Final = 22  # first column of the table


@dataclass(frozen=True, slots=True)
class CheckReport:
    """Everything the check measured; counts are totals over the run."""

    ws_url: str
    rest_url: str
    coins: tuple[str, ...]
    seconds: float  # asked for
    elapsed: float  # actually run (shorter when interrupted)
    interrupted: bool = False
    # REST discovery
    instruments: Mapping[str, int] = field(default_factory=dict)  # coin -> symbols; absent: not discovered
    discovery_errors: Mapping[str, str] = field(default_factory=dict)  # coin -> last failure (undiscovered)
    rest_requests: int = 0
    rest_errors: Mapping[str, int] = field(default_factory=dict)  # error type -> count (REST side)
    rate_limit_answers: Mapping[str, int] = field(default_factory=dict)  # "retCode 10006" -> count
    # WebSocket
    connections: int = 0
    open_connections: int = 0  # subscribed at the end
    reconnects: int = 0
    connect_error: str = ""  # the last failed connect, as the library reported it
    topics: int = 0  # wanted over all connections
    confirmed: int = 0  # confirmed at least once
    refused: int = 0  # never confirmed, refused at least once
    tickers: int = 0  # accepted
    tickers_by_coin: Mapping[str, int] = field(default_factory=dict)
    quoted: int = 0  # symbols with at least one accepted ticker
    stream_errors: Mapping[str, int] = field(default_factory=dict)  # error type -> count (WebSocket side)
    pings: int = 0  # judged: answered, or old enough to have been
    pongs: int = 0
    pong_rtts: Sequence[float] = ()  # seconds
    lags: Sequence[float] = ()  # seconds, arrival minus frame ts (a sample when the run was long)

    @property
    def unanswered(self) -> int:
        """Topics neither confirmed nor refused: still waiting at the end, or never sent."""
        return max(0, self.topics - self.confirmed - self.refused)

    @property
    def rejected(self) -> dict[str, int]:
        return {t: n for t in FRAME_ERRORS if (n := self.stream_errors.get(t, 0))}


def quantile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank quantile (``q`` in [0, 1]); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = min(len(ordered), max(1, math.ceil(q * len(ordered))))
    return ordered[rank - 1]


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1000
    return f"{ms:.1f} ms" if ms < 10 else f"{ms:,.0f} ms"


def _by_type(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{t} {n:,}" for t, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def _coins(report: CheckReport, values: Mapping[str, int], missing: str) -> str:
    return ", ".join(f"{c} {values[c]:,}" if c in values else f"{c} {missing}" for c in report.coins)


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n:,} times"


def _answers(counts: Mapping[str, int]) -> str:
    """Rate-limit answers as Bybit gave them: ``retCode 10006 x2, HTTP 429``."""
    return ", ".join(what if n == 1 else f"{what} x{n}" for what, n in sorted(counts.items()))


def reasons(report: CheckReport) -> list[str]:
    """Why the check fails, most fundamental first; empty when it passes."""
    out: list[str] = []
    secs = f"{report.elapsed:.0f} s"
    rate_limited = _answers(report.rate_limit_answers)
    unfinished = []
    failed: dict[str, list[str]] = {}  # failure -> coins (one line for the same failure)
    for coin in report.coins:
        if coin in report.instruments:
            if report.instruments[coin] == 0:
                out.append(f"{coin}: no trading option listed (check BYBIT_COINS)")
        elif coin in report.discovery_errors:
            failed.setdefault(report.discovery_errors[coin], []).append(coin)
        else:
            unfinished.append(coin)
    for failure, coins in failed.items():
        out.append(f"REST discovery failed for {', '.join(coins)}: {failure}")
    if unfinished:
        why = f": rate limited ({rate_limited})" if rate_limited else ""
        out.append(f"REST discovery of {', '.join(unfinished)} not finished in {secs}{why}")
    for error_type, n in sorted(report.rest_errors.items()):
        if error_type == errors.REST_RATE_LIMITED:
            if not unfinished:
                out.append(f"REST rate limited {_times(n)} ({rate_limited or error_type})")
        elif error_type == errors.BAD_SYMBOL:
            out.append(f"{n:,} listed instruments ignored: malformed symbol ({error_type})")
        elif error_type != errors.REST_ERROR or not report.discovery_errors:
            out.append(f"REST call failed {_times(n)} ({error_type})")
    if report.topics and report.confirmed < report.topics:
        missing = report.topics - report.confirmed
        out.append(f"{missing:,} of {report.topics:,} topics never confirmed "
                   f"({report.refused:,} refused, {report.unanswered:,} unanswered)")
    if report.confirmed and not report.tickers:
        out.append(f"no ticker in {secs} (silent stream)")
    elif report.tickers:
        silent = [c for c in report.coins if report.instruments.get(c) and not report.tickers_by_coin.get(c)]
        out.extend(f"no {coin} ticker in {secs}" for coin in silent)
    if rejected := report.rejected:
        out.append(f"{sum(rejected.values()):,} frames rejected: {_by_type(rejected)}")
    for error_type, n in sorted(report.stream_errors.items()):
        if error_type in FRAME_ERRORS or not n:
            continue
        template = _CONNECTION_REASONS.get(error_type, "error counted {n}")
        reason = f"{template.format(n=_times(n))} ({error_type})"
        if error_type == errors.WS_CONNECT and report.connect_error:
            reason += f": {report.connect_error}"
        out.append(reason)
    if report.pings and not report.pongs:
        out.append(f"no pong answered ({report.pings} {'ping' if report.pings == 1 else 'pings'} sent)")
    elif report.pongs < report.pings:
        out.append(f"{report.pings - report.pongs} of {report.pings} pings never answered")
    return out


def table(report: CheckReport) -> list[str]:
    """The lines printed before the verdict: what was measured, one row per figure."""
    secs = max(report.elapsed, 1e-9)
    ended = " (interrupted)" if report.interrupted else ""
    stream_errors = {t: n for t, n in report.stream_errors.items() if t not in FRAME_ERRORS and n}
    rows = [
        ("exchange", f"{report.ws_url} (REST {report.rest_url})"),
        ("duration", f"{report.elapsed:.1f} s of {report.seconds:g} s{ended}"),
        ("instruments", f"{_coins(report, report.instruments, 'not discovered')} "
                        f"({sum(report.instruments.values()):,} in all)"),
        ("REST", f"{report.rest_requests} requests; errors: {_by_type(report.rest_errors) or 'none'}"
                 + (f"; rate-limit answers: {_answers(report.rate_limit_answers)}"
                    if report.rate_limit_answers else "")),
        ("connections", f"{report.connections} ({report.open_connections} subscribed at the end; "
                        f"reconnects: {report.reconnects})"),
        ("topics", f"{report.confirmed:,} confirmed, {report.refused:,} failed, "
                   f"{report.unanswered:,} unanswered (of {report.topics:,})"),
        ("tickers", f"{report.tickers:,} ({report.tickers / secs:,.1f}/s); "
                    f"{report.quoted:,} of {report.topics:,} symbols quoted"),
        ("tickers by coin", _coins(report, report.tickers_by_coin, "0")),
        ("frames rejected", _by_type(report.rejected) or "0"),
        ("connection errors", _by_type(stream_errors) or "none"),
        ("pong round trip", f"p50 {_ms(quantile(report.pong_rtts, 0.5))}, "
                            f"max {_ms(max(report.pong_rtts, default=None))} "
                            f"({report.pongs} of {report.pings} pings answered)"),
        ("exchange lag", f"p50 {_ms(quantile(report.lags, 0.5))}, p99 {_ms(quantile(report.lags, 0.99))} "
                         f"(arrival minus frame ts; includes clock skew)"),
    ]
    return [f"{name:<{_WIDTH}}{value}" for name, value in rows]


def verdict_line(found: Sequence[str]) -> str:
    return "VERDICT: OK" if not found else "VERDICT: FAIL — " + "; ".join(found)
