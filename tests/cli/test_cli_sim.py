"""`cadenza-async sim` warns when it is exposed: a non-loopback bind, a token on the command line."""

from __future__ import annotations

import pytest

import cadenza_async.testing
from cadenza_async import cli


@pytest.fixture
def served(monkeypatch):
    """``serve`` replaced by a recorder that returns at once (nothing listens)."""
    calls: list[tuple[tuple[object, ...], dict[str, object]]] = []

    async def fake_serve(*args: object, **kwargs: object) -> None:
        calls.append((args, kwargs))

    monkeypatch.setattr(cadenza_async.testing, "serve", fake_serve)
    return calls


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "sim.example.com"])
def test_sim_on_a_non_loopback_address_warns(served, capsys, host):
    assert cli.main(["sim", "--host", host, "--port", "0"]) == 0

    err = capsys.readouterr().err
    assert f"warning: --host {host} is not a loopback address" in err
    assert served[0][0][0] == host


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_sim_on_loopback_does_not_warn(served, capsys, host):
    assert cli.main(["sim", "--host", host, "--port", "0"]) == 0

    assert "warning" not in capsys.readouterr().err


def test_sim_token_flag_warns_that_it_is_visible(served, capsys):
    assert cli.main(["sim", "--port", "0", "--token", "sim-token-1234"]) == 0

    err = capsys.readouterr().err
    assert "warning: --token is visible to other users in the process list" in err
    assert served[0][1]["token"] == "sim-token-1234"
