"""The connection pool's bookkeeping (ingest/pool.py): listings and deliveries touch only their shards."""

from __future__ import annotations

import asyncio

from common.config import load_settings
from ingest.coalescer import Coalescer
from ingest.lag import LagHistogram
from ingest.pool import Pool
from ingest.sink import TickerSink
from ingest.stats import Counters


def syms(coin: str, n: int, start: int = 0) -> set[str]:
    return {f"{coin}-27DEC26-{10000 + i}-C" for i in range(start, start + n)}


def pool(max_topics: int = 10) -> Pool:
    settings = load_settings(env={"INGEST_MAX_TOPICS_PER_CONNECTION": str(max_topics)})
    counters = Counters(coins=("BTC", "ETH"))
    sink = TickerSink(coalescer=Coalescer(), counters=counters, lag=LagHistogram())
    return Pool(settings=settings, sink=sink, counters=counters, stop=asyncio.Event())


async def test_a_universe_is_sharded_over_as_many_connections_as_the_limits_need() -> None:
    p = pool(max_topics=10)
    change = p.apply({"BTC": syms("BTC", 25), "ETH": syms("ETH", 5)})
    assert len(p.connections) == 3
    assert sum(len(c.subs.wanted) for c in p.connections) == 30
    assert change.added == {"BTC": sorted(syms("BTC", 25)), "ETH": sorted(syms("ETH", 5))}
    assert p.coin_of[next(iter(syms("ETH", 5)))] == "ETH"
    assert p.state().desired == 3


async def test_a_refresh_changes_only_the_connections_it_touches() -> None:
    p = pool(max_topics=10)
    p.apply({"BTC": syms("BTC", 30)})
    before = [set(c.subs.wanted) for c in p.connections]
    gone = sorted(syms("BTC", 2))
    change = p.apply({"BTC": syms("BTC", 28, start=2) | syms("BTC", 1, start=100)})
    assert change.removed == {"BTC": gone}
    assert len(p.connections) == 3  # the new listing fits where the delivered ones were
    after = [set(c.subs.wanted) for c in p.connections]
    assert after[1] == before[1]
    assert after[2] == before[2]
    assert after[0] == (before[0] - set(gone)) | syms("BTC", 1, start=100)
    assert all(s not in p.coin_of for s in gone)


async def test_coins_absent_from_an_update_keep_their_symbols() -> None:
    p = pool()
    p.apply({"BTC": syms("BTC", 3), "ETH": syms("ETH", 3)})
    change = p.apply({"BTC": syms("BTC", 4)})
    assert change.removed == {}
    assert sum(1 for c in p.coin_of.values() if c == "ETH") == 3


async def test_an_empty_list_for_a_tracked_coin_is_ignored_as_a_glitch() -> None:
    p = pool()
    p.apply({"BTC": syms("BTC", 3)})
    change = p.apply({"BTC": set()})
    assert change.empty
    assert len(p.coin_of) == 3


async def test_a_refresh_gives_parked_topics_another_chance() -> None:
    p = pool()
    p.apply({"BTC": syms("BTC", 3)})
    subs = p.connections[0].subs
    subs.on_connected()
    while subs.next_request(0.0) is not None:
        pass
    subs.parked.add(sorted(syms("BTC", 3))[0])
    p.apply({"BTC": syms("BTC", 3)})
    assert subs.parked == set()
    retry = subs.next_request(0.0)
    assert retry is not None
    assert retry.symbols == (sorted(syms("BTC", 3))[0],)
