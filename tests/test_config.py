"""Configuration: environment wins over YAML, every bad value fails with the knob's name."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from common.config import ConfigError, Settings, knob_table, load_settings
from tests.servers import repo_root


def test_defaults_point_at_bybit_mainnet_and_track_btc_eth_sol() -> None:
    s = load_settings(env={})
    assert s.ws_url == "wss://stream.bybit.com/v5/public/option"
    assert s.rest_url == "https://api.bybit.com"
    assert s.coins == ("BTC", "ETH", "SOL")
    assert s.api_port == 5001
    # The seed's numbers that the design keeps as defaults.
    assert (s.backoff_cap, s.circuit_failures, s.circuit_recovery) == (300.0, 5, 300.0)
    assert (s.rest_backoff_initial, s.rest_backoff_factor, s.rest_backoff_max) == (0.5, 1.5, 10.0)
    assert (s.option_ttl, s.option_ttl_pressure) == (86400, 21600)
    assert s.flush_interval <= 0.25


def test_environment_overrides_yaml_which_overrides_defaults(tmp_path: Path) -> None:
    cfg = tmp_path / "tracker.yml"
    cfg.write_text("coins: [btc, eth]\nINGEST_PING_INTERVAL: 15\napi_port: 6000\n")
    s = load_settings(env={"API_PORT": "7000"}, config_file=cfg)
    assert s.coins == ("BTC", "ETH")
    assert s.ping_interval == 15.0
    assert s.api_port == 7000


def test_config_file_can_come_from_tracker_config_env(tmp_path: Path) -> None:
    cfg = tmp_path / "t.yml"
    cfg.write_text("BYBIT_COINS: SOL\n")
    assert load_settings(env={"TRACKER_CONFIG": str(cfg)}).coins == ("SOL",)


def test_coins_are_upper_cased_deduplicated_and_validated() -> None:
    assert load_settings(env={"BYBIT_COINS": " btc, ETH ,btc,"}).coins == ("BTC", "ETH")
    with pytest.raises(ConfigError, match="BYBIT_COINS"):
        load_settings(env={"BYBIT_COINS": "BTC,*"})
    with pytest.raises(ConfigError, match="at least one coin"):
        load_settings(env={"BYBIT_COINS": " , "})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"API_PORT": "http"}, "API_PORT"),
        ({"API_PORT": "70000"}, "API_PORT"),
        ({"INGEST_PING_INTERVAL": "-1"}, "INGEST_PING_INTERVAL"),
        ({"INGEST_FLUSH_INTERVAL": "1"}, "INGEST_FLUSH_INTERVAL"),
        ({"INGEST_READ_HOLD": "-0.01"}, "INGEST_READ_HOLD must be >= 0"),
        ({"INGEST_READ_HOLD": "0.5"}, "INGEST_READ_HOLD must be <= 0.25"),
        ({"INGEST_OPTION_TTL_PRESSURE": "999999"}, "INGEST_OPTION_TTL_PRESSURE"),
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT"),
        ({"INGEST_MEMORY_PRESSURE_RATIO": "1.5"}, "INGEST_MEMORY_PRESSURE_RATIO"),
    ],
)
def test_bad_values_name_the_knob(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(env=env)


def test_read_holding_is_on_by_default_and_zero_turns_it_off() -> None:
    assert load_settings(env={}).read_hold == 0.025
    assert load_settings(env={"INGEST_READ_HOLD": "0"}).read_hold == 0


def test_unknown_yaml_key_and_unreadable_file_are_clear_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "t.yml"
    cfg.write_text("ping_intervall: 3\n")
    with pytest.raises(ConfigError, match="unknown key 'ping_intervall'"):
        load_settings(env={}, config_file=cfg)
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(env={}, config_file=tmp_path / "missing.yml")
    cfg.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(env={}, config_file=cfg)


def test_settings_are_frozen() -> None:
    s = load_settings(env={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.api_port = 1  # type: ignore[misc]


def test_every_knob_is_documented_in_the_readme() -> None:
    readme = (repo_root() / "README.md").read_text()
    missing = [env for env, _, _ in knob_table() if f"`{env}`" not in readme]
    assert not missing, f"README.md lacks these knobs: {missing} (python -m scripts.knobs)"
    assert len(knob_table()) == len(dataclasses.fields(Settings))


def test_only_common_config_reads_the_environment() -> None:
    offenders = []
    for package in ("common", "ingest", "exporter", "api"):
        for path in (repo_root() / package).rglob("*.py"):
            if path.name == "config.py" and package == "common":
                continue
            text = path.read_text()
            if "os.environ" in text or "os.getenv" in text:
                offenders.append(str(path.relative_to(repo_root())))
    assert not offenders, f"these read the environment directly: {offenders}"
