"""Command line of ``python -m simulator``: flags -> :class:`SimulatorOptions` -> serve."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from common.logs import configure_logging
from common.symbols import is_valid_coin
from simulator.faults import (
    CURSOR_STYLES,
    PONG_STYLES,
    RATE_LIMIT_MODES,
    RESPONSE_STYLES,
    FaultError,
    Faults,
)
from simulator.settings import (
    BYBIT_PUSH_INTERVAL,
    DEFAULT_PORT,
    IDLE_TIMEOUT,
    MIN_PUSH_INTERVAL,
    PACINGS,
    SimulatorOptions,
)

DESCRIPTION = """\
A local Bybit V5 public option exchange on one port: REST (/v5/market/time, instruments-info,
tickers), the option WebSocket (/v5/public/option: subscribe, unsubscribe, ping, ticker pushes)
and a control API (/control/state, /control/faults, /control/drop, /control/list,
/control/deliver, /control/truth, /control/instruments). Fault flags below set the faults in
force at start; POST /control/faults changes them at run time. See docs/simulator.md.
"""
_DEFAULTS = Faults()  # the healthy exchange, answering in Bybit's forms


def _coins(text: str) -> tuple[str, ...]:
    coins = tuple(c.strip().upper() for c in text.split(",") if c.strip())
    bad = [c for c in coins if not is_valid_coin(c)]
    if not coins or bad:
        raise argparse.ArgumentTypeError(f"coins must be a comma list like BTC,ETH,SOL (bad: {bad})")
    return tuple(dict.fromkeys(coins))


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _push_interval(text: str) -> float:
    value = float(text)
    if not value >= MIN_PUSH_INTERVAL:
        raise argparse.ArgumentTypeError(f"must be >= {MIN_PUSH_INTERVAL} s")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m simulator", description=DESCRIPTION,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=DEFAULT_PORT,
                   help="port for REST, WebSocket and /control/")
    p.add_argument("--coins", type=_coins, default="BTC,ETH,SOL",
                   help="base coins to list (comma list)")
    p.add_argument("--instruments-per-coin", type=_positive_int, default=None,
                   help="instruments listed per coin (default: %(default)s, meaning BTC 700, ETH 700, "
                        "SOL 600 and 300 for other coins: about 2,000 in all)")
    p.add_argument("--push-interval", type=_push_interval, default=1.0,
                   help=f"seconds between ticker pushes per subscribed symbol; Bybit pushes at most every "
                        f"{BYBIT_PUSH_INTERVAL} s, lower values (down to {MIN_PUSH_INTERVAL}) "
                        f"are for load tests")
    p.add_argument("--pacing", choices=PACINGS, default="cycle",
                   help='"cycle": every subscribed symbol pushed at once each --push-interval; "spread": '
                        "each symbol once per --push-interval as well, spread evenly over the interval "
                        "in 2 ms slices, one frame per socket write (the load of a busy exchange)")
    p.add_argument("--seed", type=int, default=1,
                   help="seed of the market walk, malformed frames and drop jitter")
    p.add_argument("--idle-timeout", type=float, default=IDLE_TIMEOUT,
                   help="close a connection after this many seconds with no client message and no push")
    faults = p.add_argument_group("faults (also settable at run time: POST /control/faults)")
    faults.add_argument("--drop-every", type=float, default=None, metavar="S",
                        help="abort every connection every S to 1.33*S seconds (jitter per connection)")
    faults.add_argument("--no-pong", action="store_true", help="ignore application pings")
    faults.add_argument("--reject-subscribe-over", type=int, default=None, metavar="N",
                        help="subscribe requests with more than N args fail entirely")
    faults.add_argument("--malformed-ratio", type=float, default=0.0, metavar="F",
                        help="fraction (0..1) of ticker pushes replaced by a malformed frame")
    faults.add_argument("--rest-rate-limit", type=int, default=0, metavar="K",
                        help="the first K REST calls answer a rate limit")
    faults.add_argument("--rest-rate-limit-mode", choices=RATE_LIMIT_MODES, default="cycle",
                        help="rate-limit answer: retCode 10006, HTTP 403, HTTP 429, or cycle through them")
    faults.add_argument("--silent", action="store_true", help="push no tickers (pings are still answered)")
    forms = p.add_argument_group(
        "answer forms (default: Bybit's option exchange; the others are for older clients; "
        "also settable at run time, and kept by /control/faults/clear)")
    forms.add_argument("--response-style", choices=RESPONSE_STYLES, default=_DEFAULTS.response_style,
                       help='subscribe answers: "command_resp" (Bybit\'s option stream: no req_id, op, '
                            'ret_msg), "command_resp_echo" (the same plus ret_msg and req_id), '
                            '"op" (the spot/linear form)')
    forms.add_argument("--pong-style", choices=PONG_STYLES, default=_DEFAULTS.pong_style,
                       help='pong: "option" ({"args": [ms], "op": "pong"}), "echo" (adds req_id and '
                            'conn_id), "spot" ({"success", "ret_msg": "pong", "conn_id", "op": "ping"})')
    forms.add_argument("--cursor-style", choices=CURSOR_STYLES, default=_DEFAULTS.cursor_style,
                       help='nextPageCursor: "percent" (Bybit\'s: holds %%2C, must be sent back '
                            'unchanged) or "plain" (a URL-safe token that survives re-encoding)')
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    p.add_argument("--log-format", default="json", choices=("json", "text"))
    return p


def options_from(argv: Sequence[str] | None = None) -> SimulatorOptions:
    """Parse ``argv``; bad flags exit 2 with a usage message (argparse's convention)."""
    p = parser()
    args = p.parse_args(argv)
    try:
        faults = Faults().updated({
            "drop_every": args.drop_every, "no_pong": args.no_pong,
            "reject_subscribe_over": args.reject_subscribe_over, "malformed_ratio": args.malformed_ratio,
            "rest_rate_limit": args.rest_rate_limit, "rest_rate_limit_mode": args.rest_rate_limit_mode,
            "silent": args.silent, "response_style": args.response_style, "pong_style": args.pong_style,
            "cursor_style": args.cursor_style,
        })
    except FaultError as exc:
        p.error(str(exc))
    if not args.idle_timeout > 0:
        p.error("--idle-timeout must be > 0")
    return SimulatorOptions(
        host=args.host, port=args.port, coins=args.coins, instruments_per_coin=args.instruments_per_coin,
        push_interval=args.push_interval, pacing=args.pacing, seed=args.seed, idle_timeout=args.idle_timeout,
        faults=faults, log_level=args.log_level, log_format=args.log_format,
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = options_from(argv)
    configure_logging(options.log_level, options.log_format)
    from simulator.server import serve  # after logging is configured

    try:
        asyncio.run(serve(options))
    except OSError as exc:
        print(f"simulator: cannot listen on {options.host}:{options.port}: {exc}", file=sys.stderr)
        return 1
    return 0
