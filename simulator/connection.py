"""One client connection as the exchange sees it: id, subscriptions, outbox and timers.

No I/O: the WebSocket handler gives it an ``abort`` callable (close the TCP connection without a
close frame, as a network failure does) and writes what its outbox holds.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from simulator.outbox import Outbox
from simulator.subscriptions import SubscriptionBook


def option_conn_id() -> str:
    """A connection id in the option stream's form: five hex groups of 16-8-8-16-8 digits.

    Bybit's option docs and live captures show ids like
    ``aa01fbfffe80af37-00000001-000b37b9-7147f432704fd28c-00e1c172`` (spot and linear use UUIDs).
    Clients must treat it as an opaque string.
    """
    h = uuid.uuid4().hex + uuid.uuid4().hex
    return f"{h[:16]}-{h[16:24]}-{h[24:32]}-{h[32:48]}-{h[48:56]}"


@dataclass(eq=False)
class Connection:
    """A WebSocket client of the public option stream."""

    abort_transport: Callable[[], None]
    opened_at: float  # monotonic
    conn_id: str = field(default_factory=option_conn_id)
    book: SubscriptionBook = field(default_factory=SubscriptionBook)
    outbox: Outbox = field(default_factory=Outbox)
    last_activity: float = 0.0  # monotonic: last client message or frame written
    drop_at: float | None = None  # monotonic deadline of the drop_every fault
    drop_every: float | None = None  # the drop_every value drop_at was drawn for
    aborted: bool = False

    def __post_init__(self) -> None:
        self.last_activity = self.opened_at

    def abort(self) -> bool:
        """Cut the connection (once); True if this call did it."""
        if self.aborted:
            return False
        self.aborted = True
        self.abort_transport()
        return True
