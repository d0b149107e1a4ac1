"""Plaintext goes only to loopback, and loopback means literal addresses or exactly ``localhost``."""

from __future__ import annotations

import pytest

from cadenza_async import ClientConfig, ConfigurationError
from cadenza_async._validate import is_loopback_host


@pytest.mark.parametrize(
    "host",
    [
        "api.localhost",
        "evil.localhost",
        "localhost.",
        "localhost.evil.example",
        "x.127.0.0.1.nip.io",
    ],
)
def test_names_that_only_look_like_loopback_are_not_loopback(host):
    assert is_loopback_host(host) is False


@pytest.mark.parametrize(
    "host", ["localhost", "LocalHost", "127.0.0.1", "127.8.9.10", "::1", "[::1]"]
)
def test_literal_loopback_addresses_and_exactly_localhost_are_loopback(host):
    assert is_loopback_host(host) is True


@pytest.mark.parametrize(
    ("api_url", "ws_url"),
    [
        ("http://api.localhost:8080", "wss://ws.example/connection/websocket"),
        ("https://api.example", "ws://ws.localhost:8080/connection/websocket"),
        ("http://localhost.:8080", "wss://ws.example/connection/websocket"),
    ],
)
def test_plaintext_to_a_localhost_subdomain_is_refused(api_url, ws_url):
    with pytest.raises(ConfigurationError, match="non-loopback"):
        ClientConfig(token="t", api_url=api_url, ws_url=ws_url)


def test_plaintext_to_literal_loopback_is_accepted():
    config = ClientConfig(
        token="t",
        api_url="http://127.0.0.1:8080",
        ws_url="ws://localhost:8080/connection/websocket",
    )
    assert config.api_url == "http://127.0.0.1:8080"
    v6 = ClientConfig(token="t", api_url="http://[::1]:8080", ws_url="ws://[::1]:8080/c")
    assert v6.ws_url == "ws://[::1]:8080/c"
