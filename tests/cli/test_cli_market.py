"""`cadenza-async book`, `ticker` and `instruments` against the simulator."""

from __future__ import annotations

import asyncio

from cli_support import clear_env, json_lines

from cadenza_async import cli

BTC = "BINANCE:BTC/USDT"


async def test_instruments_lists_the_rules(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)
    assert await cli.run(["instruments", "--plain"]) == 0
    out = capsys.readouterr().out
    assert BTC in out
    assert "0.00001" in out  # its lot size
    assert await cli.run(["instruments", "--json", "--venue", "BINANCE"]) == 0
    lines = json_lines(capsys.readouterr().out)
    assert {line["instrumentId"] for line in lines} >= {BTC}


async def test_ticker_prints_the_current_ticker(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)
    assert await cli.run(["ticker", BTC, "--json"]) == 0
    (line,) = json_lines(capsys.readouterr().out)
    bids, _ = cadenza_sim.market.book(BTC)
    assert line["bidPrice"] == str(max(bids))


async def test_book_piped_prints_one_json_object_per_update(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)

    async def move() -> None:
        while True:
            cadenza_sim.market.step(1, BTC)
            await asyncio.sleep(0.01)

    mover = asyncio.get_running_loop().create_task(move())
    try:
        assert await cli.run(["book", BTC, "--json", "--count", "3", "--depth", "2"]) == 0
    finally:
        mover.cancel()
        await asyncio.gather(mover, return_exceptions=True)
    lines = json_lines(capsys.readouterr().out)
    assert len(lines) == 3
    assert all(line["usable"] for line in lines)
    assert all(len(line["bids"]) == 2 for line in lines)


async def test_book_plain_lines_name_the_best_levels(cadenza_sim, capsys, monkeypatch):
    clear_env(monkeypatch)(cadenza_sim)
    assert await cli.run(["book", BTC, "--plain", "--count", "1"]) == 0
    out = capsys.readouterr().out
    bids, _ = cadenza_sim.market.book(BTC)
    assert f"@ {max(bids)}" in out
    assert "usable" in out
