"""Chaos matrix: each fault alone on a fresh healthy stack; which alert catches it, how fast, what is lost.

For every fault a fresh stack starts (bench.drills.stack: redis-server, simulator, supervised
ingest, exporter, API, Prometheus with the project's rules, Alertmanager routing to a loopback
webhook) and must be healthy with no alert active; then the fault is injected and the drill
measures:

- detection: seconds until the fault's expected alert (from prometheus/thresholds.yml and the
  rules) is pending and firing in Prometheus (polled every 0.5 s);
- recovery: seconds from the fault's end until data flows again (every coin fresh, every
  connection up) and the expected alert is no longer active;
- data lost: after recovery the stream is paused and Redis compared with the simulator's truth.

Time is compressed by ``--scale`` (default 1/10), the same factor everywhere a fault's
detection depends on time: every alert ``for:``, the no-data thresholds (300 s -> 30 s), and the
ingest's timers (ping 20 -> 2 s, pong timeout 10 -> 1 s, data timeout 30 -> 3 s, backoff cap
300 -> 30 s, refresh 300 -> 30 s ...). A measured time divided by the scale is the
production-equivalent; rate windows (reconnects per hour, 10-minute error windows) are not
scaled, so alerts on rates are slower here than that estimate.

    .venv/bin/python -m bench.drill_chaos [--only NAME ...] [--write-docs]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis

from bench.drills.observe import READ_ERRORS
from bench.drills.stack import Stack, StackOptions, interrupt_on_sigterm
from bench.drills.truth import TruthReport, settle_and_compare
from bench.report import RELIABILITY, provenance, write_section

POLL_SECONDS = 0.5
#: Seconds without a reconnect that count as "connections stable again".
RECONNECTS_STABLE = 10.0
#: Ingest timers in production (common/config.py defaults) that decide how fast a fault shows.
PRODUCTION_TIMERS: dict[str, float] = {
    "INGEST_PING_INTERVAL": 20.0, "INGEST_PING_TIMEOUT": 10.0, "INGEST_DATA_TIMEOUT": 30.0,
    "INGEST_BACKOFF_CAP": 300.0, "INGEST_BACKOFF_RESET_AFTER": 60.0, "INGEST_CIRCUIT_RECOVERY": 300.0,
    "INGEST_REFRESH_INTERVAL": 300.0, "INGEST_REDIS_RETRY_MAX": 5.0,
}
NO_DATA_THRESHOLD = 300.0  # thresholds.yml: NoDataFlowing / CoinDataStale, seconds


def scaled_options(scale: float, instruments_per_coin: int | None) -> StackOptions:
    """The stack with every detection timer multiplied by ``scale``."""
    env = {k: f"{v * scale:g}" for k, v in PRODUCTION_TIMERS.items()}
    # The heartbeat is written every stats interval; its TTL must outlive a few of them.
    env |= {"INGEST_STATS_INTERVAL": "0.5", "INGEST_HEARTBEAT_TTL": "5"}
    threshold = NO_DATA_THRESHOLD * scale
    return StackOptions(instruments_per_coin=instruments_per_coin, ingest_env=env, duration_scale=scale,
                        threshold_overrides={"NoDataFlowing.threshold": threshold,
                                             "CoinDataStale.threshold": threshold})


def _redis_full(stack: Stack) -> None:
    """maxmemory below what Redis holds, noeviction: every write is refused with OOM."""
    with stack.redis_client() as r:
        used = int(r.info("memory")["used_memory"])
        r.config_set("maxmemory-policy", "noeviction")
        r.config_set("maxmemory", str(int(used * 0.9)))


def _redis_roomy(stack: Stack) -> None:
    with stack.redis_client() as r:
        r.config_set("maxmemory", "0")


def _reject_subscriptions(stack: Stack) -> None:
    stack.simulator.set_faults(reject_subscribe_over=0)
    stack.simulator.drop_all()  # subscriptions happen on (re)connect


def _alertmanager_start(stack: Stack) -> None:
    assert stack.alertmanager is not None
    stack.alertmanager.start()


def _alertmanager_stop(stack: Stack) -> None:
    assert stack.alertmanager is not None
    stack.alertmanager.stop()


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault: how to cause and end it, and the alert(s) the rules raise for it (first: primary)."""

    name: str
    what: str
    expected: tuple[str, ...]
    inject: Callable[[Stack], object]
    clear: Callable[[Stack], object]
    hold: float = 0.0  # the fault lasts at least this long (wall seconds), detected or not
    #: The expected alert reads a rate over this (unscaled) window, so it resolves only that long
    #: after the fault: recovery is then data fresh and no reconnect for RECONNECTS_STABLE seconds.
    alert_window: str | None = None
    #: Wall seconds to wait for detection when longer than --detect-timeout: an alert on an
    #: hourly count fires only once enough events happened, and event rates are not scaled.
    detect_within: float = 0.0


FAULTS: tuple[Fault, ...] = (
    # Each connection delivers tickers, then dies a pong timeout after it is up; a connection that
    # delivered data reconnects within 2**3 s (ingest/reconnect.py), so the data keeps flowing
    # and the symptom is reconnect churn: 3 connections x ~200/hour. WebSocketReconnectsHigh
    # (> 60 in the last hour, for 5m) needs ~60 reconnects to happen first: ~6 min at this churn,
    # unscaled, whatever --scale says. Were the data to stop, the data alerts would catch it.
    Fault("no_pong", "the exchange stops answering application pings",
          ("WebSocketReconnectsHigh", "CoinDataStale", "NoDataFlowing", "DataFreshnessBudgetBurnFast"),
          lambda s: s.simulator.set_faults(no_pong=True), lambda s: s.simulator.clear_faults(),
          alert_window="1h", detect_within=600.0),
    Fault("silent_stream", "tickers stop; pings are still answered",
          ("NoDataFlowing",), lambda s: s.simulator.set_faults(silent=True),
          lambda s: s.simulator.clear_faults()),
    Fault("rejected_subscriptions", "every subscribe request is rejected; connections dropped once",
          ("NoDataFlowing",), _reject_subscriptions, lambda s: s.simulator.clear_faults()),
    Fault("redis_down_30s", "redis-server SIGKILLed, started again (empty) 30 s later",
          ("RedisDown",), lambda s: s.redis.kill(), lambda s: s.redis.start(), hold=30.0),
    Fault("redis_full", "Redis maxmemory set below its use, policy noeviction: writes refused (OOM)",
          ("RedisMemoryCritical",), _redis_full, _redis_roomy),
    Fault("exporter_down", "the exporter process stopped",
          ("ExporterDown",), lambda s: s.exporter.stop(), lambda s: s.exporter.start()),
    Fault("alertmanager_down", "Alertmanager stopped",
          ("AlertmanagerDown",), _alertmanager_stop, _alertmanager_start),
)


@dataclass
class Outcome:
    """What one fault did."""

    fault: Fault
    scale: float
    detected_by: str | None = None
    pending_s: float | None = None
    firing_s: float | None = None
    recovered_s: float | None = None
    truth: TruthReport | None = None
    others: set[str] = field(default_factory=set)
    notified: bool = False
    error: str | None = None

    @property
    def passed(self) -> bool:
        return (self.error is None and self.firing_s is not None and self.recovered_s is not None
                and self.truth is not None and self.truth.clean)

    def verdict(self) -> str:
        if self.error is not None:
            return f"ERROR ({self.error})"
        if self.firing_s is None:
            return "NOT DETECTED"
        if self.recovered_s is None:
            return "NOT RECOVERED"
        if self.truth is None or not self.truth.clean:
            return "DATA LOST"
        return "pass"

    def row(self) -> str:
        def secs(v: float | None, prod: bool = False) -> str:
            if v is None:
                return "-"
            return f"{v:.1f} (~{_human(v / self.scale)})" if prod else f"{v:.1f}"

        lost = "-" if self.truth is None else (
            "0" if self.truth.clean else f"{self.truth.lost} lost, {self.truth.corruption} corrupt")
        by = self.detected_by or "-"
        if self.detected_by and self.detected_by != self.fault.expected[0]:
            by += f" (expected first: {self.fault.expected[0]})"
        others = ", ".join(sorted(self.others)) or "-"
        recovered = secs(self.recovered_s)
        if self.recovered_s is not None and self.fault.alert_window:
            recovered += f" (rate alerts clear after their windows, up to {self.fault.alert_window})"
        return (f"| {self.fault.name} | {by} | {secs(self.pending_s, True)} | {secs(self.firing_s, True)} | "
                f"{recovered} | {lost} | {'yes' if self.notified else 'no'} | {others} | "
                f"{self.verdict()} |")


def _human(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class _ReconnectWatch:
    """How long the ingest's reconnect counter has not moved."""

    def __init__(self) -> None:
        self._value: float | None = None
        self._since = time.monotonic()

    def quiet_for(self, stack: Stack) -> float:
        sample = stack.exporter_sample()
        value = None if sample is None else sample.values.get("bybit_ws_reconnects_total")
        if value is None or value != self._value:
            self._value, self._since = value, time.monotonic()
        return time.monotonic() - self._since


def _states(stack: Stack) -> dict[str, str]:
    try:
        return stack.prom.alert_states()
    except READ_ERRORS:
        return {}


def run_fault(fault: Fault, options: StackOptions, *, detect_timeout: float,
              recover_timeout: float) -> Outcome:
    """One fault on a fresh stack; every figure of its row (a stack or control failure is its error)."""
    out = Outcome(fault, options.duration_scale)
    print(f"\n== {fault.name}: {fault.what}; expecting {' or '.join(fault.expected)}", flush=True)
    try:
        _run_fault(fault, options, out, detect_timeout=detect_timeout, recover_timeout=recover_timeout)
    except (AssertionError, OSError, redis.RedisError) as exc:  # SimulatorError is an AssertionError
        out.error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        print(f"  error: {out.error}", flush=True)
    return out


def _run_fault(fault: Fault, options: StackOptions, out: Outcome, *, detect_timeout: float,
               recover_timeout: float) -> None:
    with Stack(options) as stack:
        start = time.monotonic()
        fault.inject(stack)
        while (elapsed := time.monotonic() - start) < max(detect_timeout, fault.detect_within, fault.hold):
            states = _states(stack)
            out.others |= set(states) - set(fault.expected)
            for name in fault.expected:
                state = states.get(name)
                if state is not None and out.pending_s is None:
                    out.pending_s = elapsed
                    print(f"  {elapsed:6.1f}s {name} {state}", flush=True)
                if state == "firing" and out.firing_s is None:
                    out.firing_s, out.detected_by = elapsed, name
                    print(f"  {elapsed:6.1f}s {name} firing", flush=True)
            if out.firing_s is not None and elapsed >= fault.hold:
                break
            time.sleep(POLL_SECONDS)
        ended = time.monotonic()
        fault.clear(stack)
        print(f"  {ended - start:6.1f}s fault ended", flush=True)
        stable = _ReconnectWatch()
        while (since := time.monotonic() - ended) < recover_timeout:
            states = _states(stack)
            out.others |= set(states) - set(fault.expected)
            if fault.alert_window is None:
                settled = not set(states) & set(fault.expected)
            else:
                settled = stable.quiet_for(stack) >= RECONNECTS_STABLE
            if stack.data_fresh(5.0) and settled:
                out.recovered_s = since - (RECONNECTS_STABLE if fault.alert_window else 0.0)
                print(f"  recovered {out.recovered_s:.1f}s after the fault ended", flush=True)
                break
            time.sleep(POLL_SECONDS)
        if out.recovered_s is None:
            print(f"  not recovered within {recover_timeout:.0f}s", flush=True)
        out.truth = settle_and_compare(stack.simulator, stack.redis_client(), options.coins)
        out.notified = bool(out.detected_by) and out.detected_by in stack.webhook.names("firing")
        print(f"  truth: {out.truth.summary()}", flush=True)


#: What this drill found broken, fixed in the product (kept in the doc section on every run).
FINDINGS = """Found by this drill and fixed in the product:

- With Alertmanager stopped no alert covered it (rules fired in Prometheus, no notification
  left). `AlertmanagerDown` (critical, `up{job="alertmanager"} == 0` for 2m) is now in
  prometheus/thresholds.yml and the generator, with promtool cases and
  docs/runbooks/AlertmanagerDown.md; it shows in Prometheus and on the dashboards and pages
  through an HA peer (the runbook recommends an external dead-man's switch).
- No pong: each connection died a pong timeout after connecting, never counted as healthy, and
  backed off to the 300 s cap: ~10 s of data per 5 minutes per connection, caught only by the
  data alerts after ~13 min. A connection that delivered tickers now reconnects within 2**3 s
  (ingest/reconnect.py): the data keeps flowing and the churn raises WebSocketReconnectsHigh.
- Rejected subscriptions: parked topics waited for the next instrument refresh (~14 min
  production-equivalent to recover). The connection now retries them after a fifth of the
  refresh interval, and a late confirmation no longer trips the data timeout at once. The
  subscribe chunk, halved down to 1 topic per request by the rejections, now grows back on
  accepted requests (it stayed at 1: ~70 s to resubscribe 700 topics, on every reconnect).
- One connection down while others carry the same coin was invisible to the per-coin staleness
  alerts: `WebSocketConnectionDown` (warning, connections of the shard plan not up for 5m).

Left as is: with Redis full (noeviction) the ingest cannot write its heartbeat either, so
IngestDown and NoDataFlowing page beside RedisMemoryCritical. Inhibiting them on
RedisMemoryCritical (> 90 %) would also hide a real ingest crash while Redis is at 90-99 %,
so the extra pages stay; the RedisMemoryCritical runbook names them as expected companions."""


def render(outcomes: list[Outcome], options: StackOptions) -> str:
    per_coin = options.instruments_per_coin
    listed = "2,000" if per_coin is None else f"{per_coin * len(options.coins):,}"
    scale = options.duration_scale
    return "\n".join([
        f"Each fault alone on a fresh stack ({listed} simulated instruments). Time scale x{scale:g}: "
        f"every alert `for:`, the no-data thresholds ({NO_DATA_THRESHOLD:.0f} s -> "
        f"{NO_DATA_THRESHOLD * scale:g} s) and the ingest's timers are multiplied by it; `(~...)` is the "
        f"measured time divided by the scale, the production-equivalent. Times in seconds from the "
        "fault's start (pending, firing in Prometheus) or its end (recovered: every coin fresh, every "
        "connection up, the alert inactive; for an alert on an hourly rate: no reconnect for "
        f"{RECONNECTS_STABLE:g} s). Rate windows are not scaled, so the bracketed production-equivalent "
        "does not hold for an alert on an hourly count: it fires once enough events happened. For "
        "`no_pong` in production (pings every 20 s, 10 s timeout, each connection dying ~10 s after "
        "connect and back within 8-10 s): 3 connections make the 60 reconnects in ~6-7 min, plus "
        "`for: 5m`, so WebSocketReconnectsHigh fires after ~12 min, while data keeps flowing. "
        "Data lost: Redis vs the simulator's truth after recovery.",
        "",
        "| fault | detected by | pending s | firing s | recovered s | data lost | paged (webhook) | "
        "other alerts seen | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
        *(o.row() for o in outcomes),
        "",
        "Faults and the alerts expected for them (first: the one the rules mean for it):",
        "",
        *(f"- `{o.fault.name}`: {o.fault.what}; {', '.join(f'`{n}`' for n in o.fault.expected)}"
          for o in outcomes),
        "",
        FINDINGS,
    ])


def main(argv: list[str] | None = None) -> int:
    names = [f.name for f in FAULTS]
    parser = argparse.ArgumentParser(prog="python -m bench.drill_chaos",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=names, metavar="NAME",
                        help=f"run only these faults ({', '.join(names)})")
    parser.add_argument("--instruments-per-coin", type=int, default=None,
                        help="simulator listing per coin (default: BTC 700, ETH 700, SOL 600 = 2,000)")
    parser.add_argument("--scale", type=float, default=0.1, help="time scale (default 0.1)")
    parser.add_argument("--detect-timeout", type=float, default=180.0,
                        help="seconds to wait for the expected alert to fire (default 180)")
    parser.add_argument("--recover-timeout", type=float, default=120.0,
                        help="seconds to wait for recovery after the fault ends (default 120)")
    parser.add_argument("--write-docs", action="store_true",
                        help=f"replace the Chaos matrix section of {RELIABILITY} with this run's figures")
    args = parser.parse_args(argv)
    options = scaled_options(args.scale, args.instruments_per_coin)
    chosen = [f for f in FAULTS if not args.only or f.name in args.only]
    outcomes = []
    with interrupt_on_sigterm():
        for fault in chosen:
            outcomes.append(run_fault(fault, options, detect_timeout=args.detect_timeout,
                                      recover_timeout=args.recover_timeout))
    passed = all(o.passed for o in outcomes)
    body = "\n".join([provenance(argv), "", render(outcomes, options), "",
                      f"Verdict: **{'pass' if passed else 'FAIL'}** "
                      f"({sum(o.passed for o in outcomes)} of {len(outcomes)} faults detected, recovered, "
                      "nothing lost)."])
    print("\n" + body)
    print(f"\nchaos drill: {'PASS' if passed else 'FAIL'}")
    if args.write_docs:
        print(f"wrote {write_section('chaos', 'Chaos matrix', body)}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
