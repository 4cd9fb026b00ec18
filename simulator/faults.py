"""Fault switches: what the simulated exchange does wrong, settable at start and at run time.

One frozen value object; the control API and the command line both go through
:meth:`Faults.updated`, which validates every change so a typo in a chaos drill is an error
answer, not a silently ignored switch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

#: Subscribe/unsubscribe answer forms. ``command_resp`` is what Bybit's option stream sends (docs
#: 2023-2026 and live captures: no req_id, op or ret_msg); ``command_resp_echo`` is the same with
#: ``ret_msg`` and ``req_id`` echoed (this simulator's form before 2026, for clients that match answers
#: by req_id); ``op`` is the spot/linear form ``{"success","ret_msg","conn_id","req_id","op"}``.
RESPONSE_STYLES: Final = ("command_resp", "command_resp_echo", "op")
#: Pong forms. ``option`` is the option stream's documented pong ``{"args": [ms], "op": "pong"}``;
#: ``echo`` adds req_id and conn_id (the private-stream form, this simulator's form before 2026);
#: ``spot`` is the spot/linear answer ``{"success", "ret_msg": "pong", "conn_id", "op": "ping"}``.
PONG_STYLES: Final = ("option", "echo", "spot")
#: ``nextPageCursor`` forms. ``percent`` is Bybit's: the cursor text itself holds ``%2C`` and must be
#: sent back as is (a client that percent-encodes it again gets retCode 10001); ``plain`` is this
#: simulator's older cursor with URL-safe characters only, which survives any encoding.
CURSOR_STYLES: Final = ("percent", "plain")
RATE_LIMIT_MODES: Final = ("cycle", "10006", "403", "429")
#: Faults that choose an answer *form* rather than break something: ``/control/faults/clear`` puts
#: them back to their start-up values instead of the defaults.
FORM_FAULTS: Final = ("response_style", "pong_style", "cursor_style", "rest_rate_limit_mode")


class FaultError(ValueError):
    """A fault change names an unknown switch or gives it a value out of range."""


@dataclass(frozen=True, slots=True)
class Faults:
    """Every switch; the defaults are a healthy exchange answering exactly as Bybit does."""

    drop_every: float | None = None  # abort each connection every N..1.33N seconds
    no_pong: bool = False  # ignore application pings
    reject_subscribe_over: int | None = None  # subscribe requests with more args fail entirely
    malformed_ratio: float = 0.0  # fraction of ticker pushes replaced by a malformed frame
    rest_rate_limit: int = 0  # the next K REST calls answer a rate limit
    rest_rate_limit_mode: str = "cycle"  # which rate-limit answer: cycle | 10006 | 403 | 429
    silent: bool = False  # stop pushing tickers (pings are still answered)
    response_style: str = "command_resp"  # subscribe answers: command_resp | command_resp_echo | op
    pong_style: str = "option"  # pong form: option | echo | spot
    cursor_style: str = "percent"  # instruments-info nextPageCursor: percent | plain

    def updated(self, changes: Mapping[str, Any]) -> Faults:
        """A copy with ``changes`` applied; raises :class:`FaultError` naming the bad switch."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise FaultError(f"unknown fault(s) {unknown}; known: {sorted(known)}")
        clean = {name: _VALIDATORS[name](name, value) for name, value in changes.items()}
        return dataclasses.replace(self, **clean)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _positive_or_none(name: str, value: Any) -> float | None:
    if value is None:
        return None
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not (math.isfinite(value) and value > 0):
        raise FaultError(f"{name} must be a positive number of seconds or null, got {value!r}")
    return float(value)


def _bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise FaultError(f"{name} must be true or false, got {value!r}")
    return value


def _count_or_none(name: str, value: Any) -> int | None:
    if value is None:
        return None
    return _count(name, value)


def _count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FaultError(f"{name} must be an integer >= 0, got {value!r}")
    return value


def _ratio(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.0 <= value <= 1.0:
        raise FaultError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def _choice(choices: tuple[str, ...]) -> Any:
    def check(name: str, value: Any) -> str:
        if value not in choices:
            raise FaultError(f"{name} must be one of {list(choices)}, got {value!r}")
        return str(value)
    return check


_VALIDATORS: Final[dict[str, Any]] = {
    "drop_every": _positive_or_none,
    "no_pong": _bool,
    "reject_subscribe_over": _count_or_none,
    "malformed_ratio": _ratio,
    "rest_rate_limit": _count,
    "rest_rate_limit_mode": _choice(RATE_LIMIT_MODES),
    "silent": _bool,
    "response_style": _choice(RESPONSE_STYLES),
    "pong_style": _choice(PONG_STYLES),
    "cursor_style": _choice(CURSOR_STYLES),
}
