"""ClientConfig, Timeouts, RetryPolicy: validation, from_env, full-jitter delays."""

from __future__ import annotations

import random

import pytest

from cadenza_async import CadenzaClient
from cadenza_async.config import (
    DEFAULT_API_URL,
    DEFAULT_WS_URL,
    ClientConfig,
    RetryPolicy,
    Timeouts,
)
from cadenza_async.errors import ConfigurationError

ENV = {
    "CADENZA_TOKEN": "env-token",
    "CADENZA_API_URL": "https://api.example.com/",
    "CADENZA_WS_URL": "wss://ws.example.com/connection/websocket",
    "CADENZA_TRADING_ACCOUNT_ID": "acc00000-0000-4000-8000-000000000001",
}


def test_from_env_reads_every_cadenza_variable():
    config = ClientConfig.from_env(ENV)

    assert config.token == "env-token"
    assert config.api_url == "https://api.example.com"  # trailing slash dropped
    assert config.ws_url == "wss://ws.example.com/connection/websocket"
    assert config.trading_account_id == "acc00000-0000-4000-8000-000000000001"


def test_from_env_overrides_win_and_none_overrides_are_ignored():
    config = ClientConfig.from_env(ENV, token="other", trading_account_id=None)
    assert config.token == "other"
    assert config.trading_account_id == "acc00000-0000-4000-8000-000000000001"


def test_from_env_defaults_to_uat_urls():
    config = ClientConfig.from_env({"CADENZA_TOKEN": "t"})
    assert (config.api_url, config.ws_url) == (DEFAULT_API_URL, DEFAULT_WS_URL)
    assert config.trading_account_id is None


def test_from_env_without_token_is_a_configuration_error():
    with pytest.raises(ConfigurationError):
        ClientConfig.from_env({"CADENZA_API_URL": "https://api.example.com"})


def test_client_from_env_uses_the_process_environment(monkeypatch):
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    client = CadenzaClient.from_env()
    assert client.config.api_url == "https://api.example.com"
    assert client.config.trading_account_id == "acc00000-0000-4000-8000-000000000001"


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"token": ""}, id="empty-token"),
        pytest.param({"token": 42}, id="token-not-str"),
        pytest.param({"api_url": ""}, id="empty-url"),
        pytest.param({"api_url": "https://user:pw@api.example.com"}, id="credentials-in-url"),
        pytest.param({"ws_url": "https://ws.example.com"}, id="ws-url-wrong-scheme"),
        pytest.param({"trading_account_id": "a/b"}, id="bad-account"),
        pytest.param({"cancel_via": "smoke"}, id="cancel-via"),
        pytest.param({"drain_timeout": -1}, id="drain-timeout"),
        pytest.param({"max_rate": 0}, id="max-rate"),
        pytest.param({"order_updates_buffer": 0}, id="buffer"),
        pytest.param({"ping_grace": 0}, id="ping-grace-zero"),
        pytest.param({"ping_grace": float("nan")}, id="ping-grace-nan"),
        pytest.param({"ping_grace": "1"}, id="ping-grace-str"),
        pytest.param({"reconnect_min_delay": 0}, id="reconnect-min-zero"),
        pytest.param({"reconnect_min_delay": float("inf")}, id="reconnect-min-inf"),
        pytest.param(
            {"reconnect_min_delay": 1.0, "reconnect_max_delay": 0.5}, id="reconnect-max-below-min"
        ),
        pytest.param({"max_message_size": 100}, id="max-message-size-tiny"),
        pytest.param({"max_message_size": 1.5e6}, id="max-message-size-float"),
        pytest.param({"max_message_size": True}, id="max-message-size-bool"),
    ],
)
def test_invalid_settings_raise_configuration_error(changes):
    settings = {"token": "t", **changes}
    with pytest.raises(ConfigurationError):
        ClientConfig(**settings)


def test_configuration_error_is_a_value_error():
    with pytest.raises(ValueError):
        ClientConfig(token="")


@pytest.mark.parametrize("field", ["connect", "request", "confirm"])
@pytest.mark.parametrize("value", [0, -1, "1"])
def test_timeouts_must_be_positive_numbers(field, value):
    with pytest.raises(ConfigurationError):
        Timeouts(**{field: value})


def test_retry_policy_rejects_nonsense():
    with pytest.raises(ConfigurationError):
        RetryPolicy(attempts=0)
    with pytest.raises(ConfigurationError):
        RetryPolicy(base_delay=-1)


def test_retry_delays_are_full_jitter_capped_and_one_fewer_than_attempts():
    policy = RetryPolicy(attempts=6, base_delay=0.1, max_delay=0.5)
    caps = [0.1, 0.2, 0.4, 0.5, 0.5]
    for seed in range(50):
        delays = list(policy.delays(random.Random(seed)))
        assert len(delays) == 5
        assert all(0.0 <= d <= cap for d, cap in zip(delays, caps, strict=True))
    assert list(RetryPolicy(attempts=1).delays()) == []


def test_retry_delays_are_jittered_not_fixed():
    policy = RetryPolicy(attempts=2, base_delay=1.0, max_delay=1.0)
    firsts = {next(policy.delays(random.Random(seed))) for seed in range(20)}
    assert len(firsts) > 10


def test_config_repr_hides_the_token():
    config = ClientConfig(token="super-secret-token")
    assert "super-secret-token" not in repr(config)
    assert "super-secret-token" not in str(config)


def test_with_changes_validates_again():
    config = ClientConfig(token="t")
    with pytest.raises(ConfigurationError):
        config.with_changes(api_url="http://api.example.com")
    assert config.with_changes(allow_insecure=True, api_url="http://api.example.com").api_url == (
        "http://api.example.com"
    )


def test_stream_tuning_defaults_match_the_settings_table():
    config = ClientConfig(token="t")
    assert config.ping_grace == 10.0
    assert (config.reconnect_min_delay, config.reconnect_max_delay) == (0.1, 20.0)
    assert config.max_message_size == 2**20


def test_stream_tuning_is_accepted_when_sane():
    config = ClientConfig(
        token="t",
        ping_grace=0.5,
        reconnect_min_delay=0.01,
        reconnect_max_delay=0.01,
        max_message_size=4096,
    )
    assert (config.ping_grace, config.reconnect_max_delay, config.max_message_size) == (
        0.5,
        0.01,
        4096,
    )
