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


@dataclass(eq=False)
class Connection:
    """A WebSocket client of the public option stream."""

    abort_transport: Callable[[], None]
    opened_at: float  # monotonic
    conn_id: str = field(default_factory=lambda: str(uuid.uuid4()))
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
