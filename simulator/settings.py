"""The simulator's start-up options: one frozen value built from the command line.

The simulator is a tool with its own flags (``python -m simulator --help``); it does not read the
stack's environment configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from simulator.faults import Faults
from simulator.listings import DEFAULT_INSTRUMENTS, DEFAULT_INSTRUMENTS_OTHER

DEFAULT_PORT: Final = 8765
#: Bybit pushes option tickers at most every 100 ms; faster pushes are for load tests only.
BYBIT_PUSH_INTERVAL: Final = 0.1
MIN_PUSH_INTERVAL: Final = 0.01
#: Bybit cuts a connection after 10 minutes with no ping and no data.
IDLE_TIMEOUT: Final = 600.0
#: How a push cycle goes out: "cycle" (every subscribed symbol at once, each ``push_interval``)
#: or "spread" (each symbol once per ``push_interval`` too, but the symbols spread evenly over
#: the interval in small slices, one frame per socket write, as a busy exchange delivers them).
PACINGS: Final = ("cycle", "spread")
#: A spread cycle goes out in slices this far apart (a few frames each at Bybit's maximum rate).
SPREAD_TICK: Final = 0.002


@dataclass(frozen=True, slots=True)
class SimulatorOptions:
    """Everything fixed at start (faults can change later through the control API)."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    coins: tuple[str, ...] = ("BTC", "ETH", "SOL")
    instruments_per_coin: int | None = None  # None: BTC 700, ETH 700, SOL 600, others 300
    push_interval: float = 1.0
    pacing: str = "cycle"
    seed: int = 1
    idle_timeout: float = IDLE_TIMEOUT
    faults: Faults = field(default_factory=Faults)
    log_level: str = "INFO"
    log_format: str = "json"

    def instruments_for(self, coin: str) -> int:
        if self.instruments_per_coin is not None:
            return self.instruments_per_coin
        return DEFAULT_INSTRUMENTS.get(coin, DEFAULT_INSTRUMENTS_OTHER)

    @property
    def model_interval(self) -> float:
        """How often the market moves: every push, but never faster than Bybit's 100 ms.

        Below 100 ms pushes repeat the latest snapshot with a fresh id and ts (load tests); the
        market itself does not need to move faster than Bybit publishes it.
        """
        return max(self.push_interval, BYBIT_PUSH_INTERVAL)

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host, "port": self.port, "coins": list(self.coins),
            "instruments_per_coin": self.instruments_per_coin, "push_interval": self.push_interval,
            "pacing": self.pacing,
            "model_interval": self.model_interval, "seed": self.seed, "idle_timeout": self.idle_timeout,
            "log_level": self.log_level,
        }
