"""OrderStream.observe: per-channel observers hear publications, gaps and live changes."""

from __future__ import annotations

import msgspec
from test_stream import Recorder, channel_of, publish, running

from cadenza_async.testing import CadenzaSimulator


class Observer:
    """Records every observer call as a tuple, and pokes the stream test's recorder."""

    def __init__(self, rec: Recorder) -> None:
        self.calls: list[tuple] = []
        self._rec = rec

    def publication(self, channel, data, offset):
        self.calls.append(("pub", channel, msgspec.json.decode(data)["data"]["status"], offset))
        self._rec._poke()

    def gap(self, channel, reason):
        self.calls.append(("gap", channel, reason))
        self._rec._poke()

    def live(self, channel, position):
        self.calls.append(("live", channel, None if position is None else position.offset))
        self._rec._poke()

    def refused(self, channel, error):
        self.calls.append(("refused", channel, error.errno))
        self._rec._poke()

    def kinds(self) -> list[str]:
        return [call[0] for call in self.calls]


async def test_an_observer_hears_live_then_publications_with_offsets():
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec, subscribe=False) as stream:
        obs = Observer(rec)
        stream.observe(channel_of(sim), obs)
        await stream.subscribe(channel_of(sim))
        publish(sim, 2)
        await rec.wait(lambda: obs.kinds().count("pub") == 2)
        assert obs.calls[0] == ("live", channel_of(sim), 0)
        assert [c[3] for c in obs.calls if c[0] == "pub"] == [1, 2]


async def test_a_disconnect_is_not_live_and_a_recovery_is_live_again_without_gap():
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec) as stream:
        obs = Observer(rec)
        stream.observe(channel_of(sim), obs)
        await sim.disconnect_all(code=3001)
        publish(sim, 1)  # in history only: replayed by the recovery
        await rec.wait(lambda: obs.kinds().count("live") == 2)
        assert obs.kinds() == ["live", "pub", "live"]
        assert obs.calls[0] == ("live", channel_of(sim), None)
        assert obs.calls[-1] == ("live", channel_of(sim), 1)


async def test_a_lost_history_is_a_gap_with_its_reason_before_live():
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec) as stream:
        obs = Observer(rec)
        stream.observe(channel_of(sim), obs)
        publish(sim, 1)
        await rec.wait(lambda: obs.kinds().count("pub") == 1)
        await sim.disconnect_all(code=3001)
        sim.lose_history()
        await rec.wait(lambda: "gap" in obs.kinds() and obs.calls[-1][0] == "live")
        assert obs.kinds()[-2:] == ["gap", "live"]
        assert ("gap", channel_of(sim), "not_recovered") in obs.calls


async def test_an_offset_skip_is_a_gap_and_an_observer_for_all_channels_hears_it_too():
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec) as stream:
        one, every = Observer(rec), Observer(rec)
        stream.observe(channel_of(sim), one)
        stream.observe(None, every)
        sim.reorder_next_publications(2)
        publish(sim, 2)
        await rec.wait(lambda: "gap" in one.kinds() and "gap" in every.kinds())
        assert ("gap", channel_of(sim), "gap") in one.calls


async def test_an_unobserved_observer_hears_nothing_more():
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec) as stream:
        obs = Observer(rec)
        stream.observe(channel_of(sim), obs)
        stream.observe(channel_of(sim), obs)  # once
        publish(sim, 1)
        await rec.wait(lambda: obs.kinds().count("pub") == 1)
        stream.unobserve(channel_of(sim), obs)
        stream.unobserve(channel_of(sim), obs)  # no-op
        publish(sim, 1)
        await rec.wait(lambda: len(rec.pubs) == 2)
        assert obs.kinds() == ["pub"]


async def test_a_refused_channel_is_reported_to_its_observer():
    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec, subscribe=False) as stream:
        obs = Observer(rec)
        other = "tradingAccount:00000000-0000-4000-8000-000000000000"
        stream.observe(other, obs)
        stream.want(other)
        await rec.wait(lambda: obs.calls)
        assert obs.calls == [("refused", other, 103)]


async def test_a_failing_observer_is_logged_and_the_stream_goes_on(caplog):
    class Broken(Observer):
        def publication(self, channel, data, offset):
            raise RuntimeError("boom")

    rec = Recorder()
    async with CadenzaSimulator() as sim, running(sim, rec) as stream:
        stream.observe(channel_of(sim), Broken(rec))
        publish(sim, 1)
        await rec.wait(lambda: len(rec.pubs) == 1)
        assert "observer failed" in caplog.text
