"""The pytest plugin: the ``cadenza_sim`` fixture and its marker options."""

from __future__ import annotations

import aiohttp
import pytest

from cadenza_async.testing import CadenzaSimulator

pytestmark = pytest.mark.cadenza_sim(history_size=7)


async def test_fixture_gives_a_running_simulator(cadenza_sim):
    assert isinstance(cadenza_sim, CadenzaSimulator)
    assert cadenza_sim.cancel_delay == 0.0
    async with (
        aiohttp.ClientSession() as http,
        http.get(
            cadenza_sim.api_url + "/api/v3/tradeOrder/list",
            headers={"Authorization": f"Bearer {cadenza_sim.token}"},
        ) as resp,
    ):
        assert resp.status == 200


@pytest.mark.cadenza_sim(cancel_delay=0.05, ping_interval=0.5)
async def test_marker_options_reach_the_simulator(cadenza_sim):
    assert cadenza_sim.cancel_delay == 0.05
    assert cadenza_sim.ping_interval == 0.5
    assert cadenza_sim.history_size == 7  # the module's marker still applies


@pytest.mark.cadenza_sim(history_size=3)
async def test_closest_marker_wins(cadenza_sim):
    assert cadenza_sim.history_size == 3


def test_marker_is_registered(pytestconfig):
    assert any(line.startswith("cadenza_sim(") for line in pytestconfig.getini("markers"))
