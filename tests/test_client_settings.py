"""CadenzaClient names every setting: typed keywords, mappings accepted, bad values typed errors."""

from __future__ import annotations

import dataclasses
import inspect

import pytest

from cadenza_async import CadenzaClient, ClientConfig, ConfigurationError, RetryPolicy, Timeouts

WS = "ws://127.0.0.1:9/connection/websocket"
API = "http://127.0.0.1:9"


def test_every_config_setting_is_a_named_keyword_of_the_client() -> None:
    params = inspect.signature(CadenzaClient).parameters
    fields = {f.name for f in dataclasses.fields(ClientConfig)}
    assert fields <= set(params)
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


async def test_timeouts_and_retry_accept_mappings() -> None:
    client = CadenzaClient(
        token="t",
        api_url=API,
        ws_url=WS,
        timeouts={"confirm": 1},
        retry={"attempts": 5},
    )
    try:
        assert client.config.timeouts == Timeouts(confirm=1)
        assert client.config.retry == RetryPolicy(attempts=5)
    finally:
        await client.aclose()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("timeouts", {"confirm": -1}),
        ("timeouts", {"bogus": 1}),
        ("timeouts", 5),
        ("retry", {"attempts": 0}),
        ("retry", "often"),
    ],
)
def test_bad_settings_raise_configuration_error(name: str, value: object) -> None:
    with pytest.raises(ConfigurationError):
        CadenzaClient(token="t", api_url=API, ws_url=WS, **{name: value})


def test_an_unknown_setting_is_a_type_error_at_the_call() -> None:
    with pytest.raises(TypeError):
        CadenzaClient(token="t", confirm_timeout=3)  # type: ignore[call-arg]
