"""Sharding symbols over connections within Bybit's per-connection limits (ingest/sharding.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.sharding import ShardPlan, topic_chars


def symbols(n: int, *, strike_digits: int = 6, coin: str = "BTC") -> list[str]:
    return [f"{coin}-27DEC26-{i:0{strike_digits}d}-C" for i in range(n)]


def check_limits(plan: ShardPlan) -> None:
    for shard in plan.shards:
        assert len(shard.symbols) <= plan.max_topics
        assert shard.chars == sum(topic_chars(s) for s in shard.symbols)
        assert shard.chars <= plan.max_chars


def test_the_character_budget_binds_first_for_real_option_symbols() -> None:
    plan = ShardPlan(max_topics=2000, max_chars=21000)
    syms = symbols(2000)  # tickers.BTC-27DEC26-000000-C = 28 chars -> 750 per connection
    plan.add(syms)
    check_limits(plan)
    assert [len(s.symbols) for s in plan.shards] == [750, 750, 500]


def test_the_topic_count_binds_first_for_short_symbols() -> None:
    plan = ShardPlan(max_topics=2000, max_chars=1_000_000)
    plan.add(symbols(4500))
    check_limits(plan)
    assert [len(s.symbols) for s in plan.shards] == [2000, 2000, 500]


def test_a_small_universe_needs_one_connection() -> None:
    plan = ShardPlan(max_topics=2000, max_chars=21000)
    plan.add(symbols(10))
    assert len(plan) == 1


def test_new_symbols_fill_free_room_without_moving_anyone() -> None:
    plan = ShardPlan(max_topics=10, max_chars=10_000)
    plan.add(symbols(25))
    before = {s: plan.shard_of(s) for s in symbols(25)}
    removed = plan.remove(symbols(25)[:3])  # frees room in shard 0
    assert removed == {0: symbols(25)[:3]}
    added = plan.add(symbols(30, coin="ETH")[:5])
    assert added == {0: symbols(30, coin="ETH")[:3], 2: symbols(30, coin="ETH")[3:5]}
    assert all(plan.shard_of(s) == before[s] for s in symbols(25)[3:])
    check_limits(plan)


def test_adding_known_symbols_changes_nothing() -> None:
    plan = ShardPlan(max_topics=10, max_chars=10_000)
    plan.add(symbols(5))
    assert plan.add(symbols(5)) == {}


def test_removing_unknown_symbols_changes_nothing() -> None:
    plan = ShardPlan(max_topics=10, max_chars=10_000)
    assert plan.remove(["BTC-1JAN27-1-C"]) == {}


def test_a_topic_longer_than_the_budget_is_refused() -> None:
    plan = ShardPlan(max_topics=10, max_chars=20)
    with pytest.raises(ValueError, match="budget"):
        plan.add(["BTC-27DEC26-100000-C"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(min_value=1, max_value=300)), max_size=12),
       st.integers(min_value=1, max_value=50), st.integers(min_value=30, max_value=2000))
def test_any_sequence_of_listings_and_deliveries_stays_within_limits(
        steps: list[tuple[bool, int]], max_topics: int, max_chars: int) -> None:
    plan = ShardPlan(max_topics=max_topics, max_chars=max_chars)
    universe: set[str] = set()
    pool = symbols(600, strike_digits=4) + symbols(600, strike_digits=7, coin="SOL")
    cursor = 0
    for listing, n in steps:
        if listing:
            new = pool[cursor:cursor + n]
            cursor += n
            plan.add(new)
            universe.update(new)
        else:
            gone = sorted(universe)[:n]
            plan.remove(gone)
            universe.difference_update(gone)
        check_limits(plan)
        assert set().union(*(s.symbols for s in plan.shards)) == universe if plan.shards else not universe
