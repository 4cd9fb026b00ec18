"""``[[key]]`` placeholders in rule templates, filled from an alert's thresholds.

Rule expressions and annotations are written once, with ``[[threshold]]`` where a number
from prometheus/thresholds.yml belongs, and ``[[threshold|percent]]`` where a person reads it.
Double brackets never occur in PromQL or in Go templates (``{{ $value }}``), so the three
syntaxes can share one string without escaping. An unknown key or filter is an error, never
an empty string: a typo must not render a rule that compares against nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Final

from scripts.promconfig.durations import format_duration, parse_duration

PLACEHOLDER: Final = re.compile(r"\[\[([A-Za-z_][A-Za-z0-9_]*)(?:\|([a-z]+))?\]\]")


class PlaceholderError(ValueError):
    """A template names a key or filter that does not exist."""


def promql_number(value: float) -> str:
    """A float as PromQL reads it back exactly: ``300`` not ``300.0``, ``0.05`` not ``5e-02``."""
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _as_number(value: float | str) -> float:
    if isinstance(value, str):
        raise PlaceholderError(f"{value!r} is a duration; this filter needs a number")
    return value


def _plain(value: float | str) -> str:
    return value if isinstance(value, str) else promql_number(value)


def _percent(value: float | str) -> str:
    return f"{promql_number(round(_as_number(value) * 100, 6))}%"


def _duration(value: float | str) -> str:
    return value if isinstance(value, str) else format_duration(value)


def _seconds(value: float | str) -> str:
    return promql_number(parse_duration(value)) if isinstance(value, str) else promql_number(value)


def _bytes(value: float | str) -> str:
    number = _as_number(value)
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if number >= size:
            return f"{promql_number(round(number / size, 2))}{unit}"
    return f"{promql_number(number)}B"


FILTERS: Final[Mapping[str, Callable[[float | str], str]]] = {
    "": _plain, "percent": _percent, "duration": _duration, "seconds": _seconds, "bytes": _bytes,
}


def placeholders(template: str) -> set[str]:
    """Keys a template uses."""
    return {m.group(1) for m in PLACEHOLDER.finditer(template)}


def fill(template: str, values: Mapping[str, float | str], *, where: str) -> str:
    """``template`` with every ``[[key|filter]]`` replaced; ``where`` names it in errors."""

    def replace(m: re.Match[str]) -> str:
        key, name = m.group(1), m.group(2) or ""
        if key not in values:
            raise PlaceholderError(f"{where}: [[{key}]] is not a parameter (have {sorted(values)})")
        if name not in FILTERS:
            known = sorted(f for f in FILTERS if f)
            raise PlaceholderError(f"{where}: unknown filter |{name} (have {known})")
        try:
            return FILTERS[name](values[key])
        except PlaceholderError as exc:
            raise PlaceholderError(f"{where}: [[{key}|{name}]]: {exc}") from exc

    filled = PLACEHOLDER.sub(replace, template)
    if "[[" in filled or "]]" in filled:
        raise PlaceholderError(f"{where}: malformed placeholder left in {filled!r}")
    return filled
