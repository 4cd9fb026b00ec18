"""The fuzz drill's findings as Markdown tables (printed, and written into docs/RELIABILITY.md).

One verdict per target and overall: the drill passes only when every count that must be zero
is zero and every check that must hold holds; :func:`failures` lists the ones that do not.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from bench.fuzz.api_inputs import ApiResult
from bench.fuzz.inprocess import FrameTally
from bench.fuzz.wire import FRAME_ERRORS, WireResult


@dataclass
class Findings:
    """Everything one run found; a target not run is None."""

    frames: FrameTally | None
    wire: WireResult | None
    api: ApiResult | None


def failures(f: Findings) -> list[str]:
    """Every check that did not hold, in words (empty: the drill passes)."""
    out: list[str] = []
    if f.frames is not None:
        t = f.frames
        if t.crashes:
            out.append(f"in-process: {sum(t.crashes.values())} exceptions escaped {dict(t.crashes)}")
        if t.unlisted:
            out.append(f"in-process: rejections with types outside ERROR_TYPES {dict(t.unlisted)}")
        if t.mismatches:
            out.append(f"in-process: outcomes other than the rules predict {dict(t.mismatches)}")
        if t.resp_mismatches:
            out.append(f"in-process: {t.resp_mismatches} RESP commands not read back as written")
        if t.canonical_mismatches:
            out.append(f"in-process: {t.canonical_mismatches} frames the fast path stored whose HSET "
                       "differs from the one the exact path renders")
        if t.connection_mismatches:
            out.append("in-process: the connection's handler did other than decode decided "
                       f"{dict(t.connection_mismatches)}")
        if t.canonical == 0:
            out.append("in-process: the connection's fast path stored no case (it went unchecked)")
        if t.scanner_mismatches:
            out.append(f"in-process: the C scanner judged or rendered {t.scanner_mismatches} inputs "
                       "otherwise than the pure fast path")
        if t.scanner_checked == 0:
            out.append("in-process: the C scanner is not built (scripts/setup.sh): only the pure path ran")
    if f.wire is not None:
        w = f.wire
        if w.corrupted:
            out.append(f"wire: {len(w.corrupted)} stored options differ from their last accepted push")
        if w.outside_layout or w.unexpected_options:
            out.append(f"wire: keys outside the layout {(w.outside_layout + w.unexpected_options)[:5]}")
        if not w.ingest_running:
            out.append("wire: the ingest exited")
        if not w.reconnected:
            out.append("wire: the ingest did not reconnect after the oversize frame")
        if not w.counts_ok:
            out.append(f"wire: counted {w.messages_counted} messages (expected {w.accepted_expected}) or "
                       "error counts outside the predicted bounds")
    if f.api is not None:
        a = f.api
        if a.server_errors:
            out.append(f"api: {sum(n for s, n in a.statuses.items() if s >= 500)} answers were 5xx")
        if a.malformed_answers or a.transport_failures:
            out.append(f"api: {len(a.malformed_answers)} non-2xx answers without the JSON error shape or "
                       f"failed exchanges {dict(a.transport_failures)}")
        if a.writes or a.patterns or a.foreign_keys or a.keyspace_changed:
            out.append(f"api: Redis saw writes {dict(a.writes)}, patterns {dict(a.patterns)}, keys outside "
                       f"the layout {a.foreign_keys[:3]}, keyspace changed {a.keyspace_changed}")
        if a.commands_seen == 0:
            out.append("api: MONITOR saw no command at all (the check would be blind)")
        if a.internal_errors or not a.api_running:
            out.append(f"api: internal errors {a.internal_errors:g}, running {a.api_running}")
    return out


def _n(value: int | float) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def summary(f: Findings) -> str:
    """The headline table: inputs, the counts that must be zero, time, verdict per target."""
    rows = ["| target | inputs | crashes / 5xx | wrong outcome | stored corruption | other checks | run s |",
            "|---|---|---|---|---|---|---|"]
    if f.frames is not None:
        t = f.frames
        wrong = sum(t.mismatches.values()) + len(t.unlisted) + sum(t.connection_mismatches.values())
        rows.append(f"| frames in-process (the connection's handler, sink, RESP, answers) | {_n(t.inputs)} | "
                    f"{sum(t.crashes.values())} | {wrong} | "
                    f"{t.resp_mismatches} RESP, {t.canonical_mismatches} fast path, "
                    f"{t.scanner_mismatches} C scanner | "
                    f"{t.answers_replayed:,} answers replayed, {t.canonical:,} by the fast path "
                    f"({t.scanner}), {t.scanner_checked:,} scanned by C and Python alike | "
                    f"{t.seconds:.1f} |")
    if f.wire is not None:
        w = f.wire
        running = "running" if w.ingest_running else "EXITED"
        rows.append(f"| frames over WebSocket to `python -m ingest` + Redis | {_n(w.inputs)} | "
                    f"{'0' if w.ingest_running else 'ingest exited'} | "
                    f"{'0' if w.counts_ok else 'counts off'} | {len(w.corrupted)} | "
                    f"keys outside layout {len(w.outside_layout) + len(w.unexpected_options)}; "
                    f"ingest {running}, {w.connections} connections | {w.seconds:.1f} |")
    if f.api is not None:
        a = f.api
        five = sum(n for s, n in a.statuses.items() if s >= 500)
        rows.append(f"| API paths and queries to `python -m api` | {_n(a.inputs)} | {five} | "
                    f"{len(a.malformed_answers)} not JSON errors | - | "
                    f"Redis writes {sum(a.writes.values())}, patterns {sum(a.patterns.values())}, "
                    f"foreign keys {len(a.foreign_keys)}, "
                    f"keyspace {'changed' if a.keyspace_changed else 'unchanged'} | {a.seconds:.1f} |")
    rows.append("\n`run s`: feeding and checking the inputs; drawing them is in the whole run's time.")
    return "\n".join(rows)


def errors_by_type(f: Findings) -> str:
    """Rejections by error type: in-process, and counted by the ingest vs the cases' predictions."""
    frames = f.frames.errors if f.frames is not None else Counter[str]()
    wire = f.wire
    types = sorted(set(frames) | (set(wire.errors_counted) if wire else set()), key=lambda t: -frames[t])
    rows = ["| error type | in-process rejections | ingest counted (wire) | predicted (wire) |",
            "|---|---|---|---|"]
    for error_type in types:
        if wire is None:
            counted = predicted = "-"
        else:
            counted = f"{wire.errors_counted[error_type]:,}"
            low, high = wire.errors_min[error_type], wire.errors_max[error_type]
            predicted = "not a frame error" if error_type not in FRAME_ERRORS else (
                f"{low:,}" if low == high else f"{low:,}..{high:,}")
        rows.append(f"| `{error_type}` | {frames[error_type]:,} | {counted} | {predicted} |")
    return "\n".join(rows)


def outcomes(f: Findings) -> str:
    """Prose lines: outcome mix of the frames, status and error-code mix of the API."""
    lines = []
    if f.frames is not None:
        mix = ", ".join(f"{k} {v:,}" for k, v in f.frames.outcomes.most_common())
        lines.append(f"In-process outcomes: {mix}; {len(f.frames.kinds)} kinds of case.")
    if f.wire is not None:
        w = f.wire
        lines.append(f"Over the wire: {w.accepted_expected:,} pushes accepted (the ingest counted "
                     f"{w.messages_counted:,}), {w.sent_binary:,} sent as binary frames, "
                     f"{w.oversize_sent} frame over `INGEST_MAX_FRAME_BYTES` "
                     "(closed with 1009, reconnected).")
    if f.api is not None:
        a = f.api
        statuses = ", ".join(f"{s} x{n:,}" for s, n in sorted(a.statuses.items()))
        codes = ", ".join(f"`{c}` {n:,}" for c, n in a.codes.most_common())
        lines.append(f"API statuses: {statuses}. Error codes: {codes}. MONITOR saw {a.commands_seen:,} "
                     f"commands, all reads of layout keys; API `internal` errors {a.internal_errors:g}.")
    return "\n\n".join(lines)


def render(f: Findings) -> str:
    verdict = failures(f)
    parts = [summary(f), errors_by_type(f), outcomes(f),
             "Verdict: **pass** (every count that must be 0 is 0)." if not verdict else
             "Verdict: **FAIL**\n\n" + "\n".join(f"- {line}" for line in verdict)]
    return "\n\n".join(parts)
