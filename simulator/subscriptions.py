"""One connection's subscriptions and Bybit's limits on them (sans-I/O).

Bybit's documented limits for a public option connection: at most 2,000 args, and at most
21,000 characters of args in total. What the simulator decides per request:

- Each arg must be ``tickers.<listed symbol>``; an unknown topic family, an unlisted or delivered
  symbol, a non-string or an already subscribed topic fails *that arg*. The valid args of the same
  request are still subscribed (partial success). The answer then says ``success: false`` and
  names the failed topics in ``ret_msg`` (and in ``failTopics`` in the COMMAND_RESP form): Bybit's
  docs show no partial form for the "op" answer, and "false + reasons" is what it answers for an
  already subscribed topic, so a client must read ``success: false`` as "check what failed", not
  as "nothing was subscribed".
- If the request's args (all of them, valid or not, as sent) would take the connection past
  either limit, or the request exceeds the ``reject_subscribe_over`` fault, the request fails
  *entirely*: nothing of it is subscribed. The limits are checked before the topics, as a server
  bounds work before doing it; a resent already-subscribed topic therefore counts toward them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final

TOPIC_PREFIX: Final = "tickers."
MAX_ARGS: Final = 2000
MAX_ARGS_CHARS: Final = 21000
_MAX_REASONS: Final = 10  # ret_msg names this many failures, then counts the rest


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one subscribe/unsubscribe request did."""

    succeeded: tuple[str, ...]
    failed: tuple[str, ...]
    reason: str  # "" when everything succeeded

    @property
    def success(self) -> bool:
        return not self.failed and not self.reason


def symbol_of(topic: str) -> str | None:
    """``tickers.SYM`` -> ``SYM``; anything else -> None."""
    if topic.startswith(TOPIC_PREFIX) and len(topic) > len(TOPIC_PREFIX):
        return topic[len(TOPIC_PREFIX):]
    return None


def _describe(arg: object) -> str:
    text = arg if isinstance(arg, str) else repr(arg)
    return text if len(text) <= 80 else text[:77] + "..."


def _reason(problems: list[str]) -> str:
    shown = "; ".join(problems[:_MAX_REASONS])
    if len(problems) > _MAX_REASONS:
        shown += f"; and {len(problems) - _MAX_REASONS} more"
    return shown


@dataclass
class SubscriptionBook:
    """The topics of one connection, in subscription order, and their total length."""

    max_args: int = MAX_ARGS
    max_chars: int = MAX_ARGS_CHARS
    topics: dict[str, None] = field(default_factory=dict)
    chars: int = 0

    def subscribe(self, args: object, *, listed: Callable[[str], bool],
                  reject_over: int | None = None) -> Outcome:
        """Apply a subscribe request's ``args``; see the module docstring for the rules."""
        if not isinstance(args, list) or not args:
            return Outcome((), (), "error:args must be a non-empty list of topics")
        described = tuple(_describe(a) for a in args)
        if reject_over is not None and len(args) > reject_over:
            return Outcome((), described, f"error:too many args in one request ({len(args)} > {reject_over})")
        if len(self.topics) + len(args) > self.max_args:
            return Outcome((), described, f"error:args count would exceed {self.max_args} per connection "
                                          f"({len(self.topics)} + {len(args)})")
        request_chars = sum(len(a) if isinstance(a, str) else len(repr(a)) for a in args)
        if self.chars + request_chars > self.max_chars:
            return Outcome((), described, f"error:args length would exceed {self.max_chars} characters "
                                          f"per connection ({self.chars} + {request_chars})")
        new: list[str] = []
        failed: list[str] = []
        problems: list[str] = []
        seen: set[str] = set()
        for arg in args:
            if not isinstance(arg, str):
                failed.append(_describe(arg))
                problems.append(f"error:topic must be a string,topic:{_describe(arg)}")
                continue
            symbol = symbol_of(arg)
            if symbol is None:
                problem = f"error:handler not found,topic:{_describe(arg)}"
            elif not listed(symbol):
                problem = f"error:Invalid symbol,topic:{_describe(arg)}"
            elif arg in self.topics or arg in seen:
                problem = f"error:already subscribed,topic:{_describe(arg)}"
            else:
                seen.add(arg)
                new.append(arg)
                continue
            failed.append(_describe(arg))
            problems.append(problem)
        for topic in new:
            self.topics[topic] = None
        self.chars += sum(len(t) for t in new)
        return Outcome(tuple(new), tuple(failed), _reason(problems))

    def unsubscribe(self, args: object) -> Outcome:
        """Drop topics; topics this connection does not hold fail (the others are still dropped)."""
        if not isinstance(args, list) or not args:
            return Outcome((), (), "error:args must be a non-empty list of topics")
        done: list[str] = []
        failed: list[str] = []
        problems: list[str] = []
        for arg in args:
            if isinstance(arg, str) and arg in self.topics:
                del self.topics[arg]
                self.chars -= len(arg)
                done.append(arg)
            else:
                failed.append(_describe(arg))
                problems.append(f"error:not subscribed,topic:{_describe(arg)}")
        return Outcome(tuple(done), tuple(failed), _reason(problems))

    def symbols(self) -> Sequence[str]:
        return [t[len(TOPIC_PREFIX):] for t in self.topics]
