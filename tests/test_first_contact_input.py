"""Bad input never reaches the server: the async client, the blocking client and the CLI.

For each kind of bad value the call raises its typed error naming the field
and the rule, and the simulator saw nothing: no REST request and no
WebSocket connection (``rest_requests`` and ``connect_count`` are both
counted). The clients are used without ``async with`` / ``with``, so any
connection a call opened would show.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal
from support import ThreadedSim, client_for

from cadenza_async import InvalidOrderIdError, OrderStatus, Unlisted, cli
from cadenza_async.testing import CadenzaSimulator

ID = "770e8400-e29b-41d4-a716-446655440002"
ORDER: dict[str, Any] = {
    "instrument_id": "BINANCE:BTC/USDT",
    "order_side": "BUY",
    "order_type": "LIMIT",
    "quantity": "0.01",
    "limit_price": "50000",
}

# (what changes in ORDER, the error type, the words the message must hold: field, rule)
BAD_ORDERS = [
    pytest.param({"quantity": q}, ValueError, ("quantity", rule), id=f"quantity={q!r}")
    for q, rule in [
        ("-1", "without a sign"),
        ("0", "> 0"),
        ("-0.001", "without a sign"),
        ("NaN", "finite"),
        ("Infinity", "finite"),
        ("abc", "plain decimal"),
        (" 1", "no spaces"),
        ("1,5", "','"),
        ("1e3", "exponent"),
        (Decimal("NaN"), "finite"),
        (Decimal("-2"), "> 0"),
        (-3, "> 0"),
    ]
] + [
    pytest.param({"quantity": 0.5}, TypeError, ("quantity", "not exact"), id="quantity=float"),
    pytest.param({"quantity": True}, TypeError, ("quantity", "bool"), id="quantity=bool"),
    pytest.param(
        {"limit_price": "Infinity"}, ValueError, ("limit_price", "finite"), id="price=Infinity"
    ),
    pytest.param({"limit_price": "-5"}, ValueError, ("limit_price", "sign"), id="price=-5"),
    pytest.param({"limit_price": 5e4}, TypeError, ("limit_price", "float"), id="price=float"),
    pytest.param({"stop_price": "0"}, ValueError, ("stop_price", "> 0"), id="stop=0"),
    pytest.param(
        {"order_side": "SIDEWAYS"}, ValueError, ("order_side", "BUY, SELL"), id="side=SIDEWAYS"
    ),
    pytest.param({"order_side": "buy"}, ValueError, ("order_side", "'BUY'"), id="side=buy"),
    pytest.param({"order_type": "LIMT"}, ValueError, ("order_type", "MARKET"), id="type=LIMT"),
    pytest.param(
        {"time_in_force": "FOREVER"}, ValueError, ("time_in_force", "GTC"), id="tif=FOREVER"
    ),
    pytest.param(
        {"limit_price": None}, ValueError, ("limit_price", "required"), id="LIMIT-no-price"
    ),
    pytest.param(
        {"order_type": "MARKET"}, ValueError, ("limit_price", "MARKET"), id="MARKET-with-price"
    ),
    pytest.param({"instrument_id": ""}, ValueError, ("instrument_id", "empty"), id="no-inst"),
    pytest.param(
        {"client_order_id": "a b"}, InvalidOrderIdError, ("client_order_id", "' '"), id="coid"
    ),
    pytest.param(
        {"trading_account_id": "acct-1"},
        InvalidOrderIdError,
        ("trading account id", "position"),
        id="account",
    ),
    pytest.param({"timeout": "5"}, TypeError, ("timeout", "number of seconds"), id="timeout=str"),
    pytest.param({"timeout": -1}, ValueError, ("timeout", "> 0"), id="timeout=-1"),
    pytest.param({"timeout": float("nan")}, ValueError, ("timeout", "finite"), id="timeout=nan"),
]

BAD_IDS = [
    pytest.param("not-an-id", "'n' at position 1", id="word"),
    pytest.param("12345", "5 characters long", id="number"),
    pytest.param(ID + ",", "',' at position 37", id="trailing-comma"),
    pytest.param(ID[:8] + "_" + ID[9:], "'_' at position 9", id="underscore"),
]


@pytest.fixture
def sim() -> Iterator[ThreadedSim]:
    """A simulator on a loop thread of its own, for the blocking client."""
    with start_blocking_portal("asyncio") as portal:
        simulator = portal.call(CadenzaSimulator)
        with portal.wrap_async_context_manager(simulator):
            yield ThreadedSim(portal, simulator)


def clear_env(monkeypatch: pytest.MonkeyPatch) -> Callable[[CadenzaSimulator], None]:
    """The CADENZA_* environment cleared; ``point(sim)`` aims it at a simulator."""
    for name in (
        "CADENZA_TOKEN",
        "CADENZA_API_URL",
        "CADENZA_WS_URL",
        "CADENZA_TRADING_ACCOUNT_ID",
    ):
        monkeypatch.delenv(name, raising=False)

    def point(sim: CadenzaSimulator) -> None:
        monkeypatch.setenv("CADENZA_TOKEN", sim.token)
        monkeypatch.setenv("CADENZA_API_URL", sim.api_url)
        monkeypatch.setenv("CADENZA_WS_URL", sim.ws_url)
        monkeypatch.setenv("CADENZA_TRADING_ACCOUNT_ID", sim.trading_account_id)

    return point


def assert_untouched(sim: CadenzaSimulator) -> None:
    assert sim.rest_requests == []
    assert sim.connect_count == 0


def assert_names(error: BaseException, words: tuple[str, ...]) -> None:
    for word in words:
        assert word in str(error), (word, str(error))


# ---- the async client ------------------------------------------------------------------------


@pytest.mark.parametrize(("change", "error", "words"), BAD_ORDERS)
async def test_a_bad_submit_reaches_nothing(cadenza_sim, change, error, words):
    client = client_for(cadenza_sim)
    try:
        with pytest.raises(error) as caught:
            await client.submit_and_confirm(**{**ORDER, **change})
        assert_names(caught.value, words)
        if "timeout" in change:  # (a call's setting, not an order's field)
            with pytest.raises(error):
                await client.submit_many([ORDER], timeout=change["timeout"])
        else:
            with pytest.raises(error):
                await client.submit_order(**{**ORDER, **change})
            with pytest.raises(error):
                await client.submit_many([ORDER, {**ORDER, **change}])
    finally:
        await client.aclose()
    assert_untouched(cadenza_sim)


async def test_a_bulk_submit_with_one_bad_order_sends_none_and_names_its_index(cadenza_sim):
    client = client_for(cadenza_sim)
    try:
        with pytest.raises(ValueError, match=r"^order 3: quantity 'abc'"):
            await client.submit_many([ORDER, ORDER, ORDER, {**ORDER, "quantity": "abc"}, ORDER])
    finally:
        await client.aclose()
    assert_untouched(cadenza_sim)
    assert cadenza_sim.submits_applied == 0


@pytest.mark.parametrize(("change", "error", "words"), BAD_ORDERS)
async def test_a_replace_with_a_bad_new_order_leaves_the_old_one_live(
    cadenza_sim, change, error, words
):
    old = cadenza_sim.create_order()
    client = client_for(cadenza_sim)
    try:
        with pytest.raises(error) as caught:
            await client.replace_and_confirm(old.trade_order_id, **{**ORDER, **change})
    finally:
        await client.aclose()
    assert_names(caught.value, words)
    assert_untouched(cadenza_sim)
    assert cadenza_sim.get_order(old.trade_order_id).status == OrderStatus.OPEN
    assert cadenza_sim.cancels_applied.get(old.trade_order_id, 0) == 0


async def test_a_replace_with_place_if_filled_as_text_is_refused(cadenza_sim):
    old = cadenza_sim.create_order()
    client = client_for(cadenza_sim)
    try:
        with pytest.raises(TypeError, match="place_if_filled must be True or False"):
            await client.replace_and_confirm(old.trade_order_id, **ORDER, place_if_filled="false")
    finally:
        await client.aclose()
    assert_untouched(cadenza_sim)
    assert cadenza_sim.get_order(old.trade_order_id).status == OrderStatus.OPEN


@pytest.mark.parametrize(("bad", "named"), BAD_IDS)
async def test_a_bad_order_id_reaches_nothing(cadenza_sim, bad, named):
    client = client_for(cadenza_sim)
    try:
        for call in (
            lambda: client.cancel_and_confirm(bad),
            lambda: client.cancel(bad),
            lambda: client.get_order(bad),
            lambda: client.replace_and_confirm(bad, **ORDER),
        ):
            with pytest.raises(InvalidOrderIdError) as caught:
                await call()
            assert_names(caught.value, ("order id", named))
        with pytest.raises(InvalidOrderIdError):
            client.cancel_nowait(bad)
        [outcome] = await client.cancel_many([bad])
        assert isinstance(outcome, InvalidOrderIdError)
        with pytest.raises(InvalidOrderIdError, match="trading account id"):
            await client.cancel_and_confirm(ID, trading_account_id=bad)
    finally:
        await client.aclose()
    assert_untouched(cadenza_sim)


async def test_bad_call_settings_reach_nothing(cadenza_sim):
    client = client_for(cadenza_sim)
    try:
        for call, error, words in (
            (lambda: client.cancel_and_confirm(ID, timeout="5"), TypeError, ("timeout",)),
            (lambda: client.cancel_many([ID], concurrency=0), ValueError, ("concurrency",)),
            (lambda: client.cancel_many([ID], confirm="no"), TypeError, ("confirm",)),
            (lambda: client.cancel_many([ID], timeout=0), ValueError, ("timeout",)),
            (lambda: client.list_orders(limit=-1), ValueError, ("limit",)),
            (lambda: client.cancel_all_open(ID, timeout="1"), TypeError, ("timeout",)),
            (lambda: client.subscribe_account("acct-1"), InvalidOrderIdError, ("account",)),
        ):
            with pytest.raises(error) as caught:
                await call()
            assert_names(caught.value, words)
    finally:
        await client.aclose()
    assert_untouched(cadenza_sim)


async def test_an_unlisted_value_goes_through_as_given(cadenza_sim):
    async with client_for(cadenza_sim) as client:
        result = await client.submit_and_confirm(**ORDER, time_in_force=Unlisted("GTX"))
    assert result.order.time_in_force == "GTX"


async def test_an_upper_case_id_is_sent_in_lower_case(cadenza_sim):
    order = cadenza_sim.create_order()
    async with client_for(cadenza_sim) as client:
        result = await client.cancel_and_confirm(order.trade_order_id.upper())
        [bulk] = await client.cancel_many([order.trade_order_id.upper()])
    assert result.cancelled
    assert result.order_id == order.trade_order_id
    assert bulk.order_id == order.trade_order_id  # the bulk's outcome is the input's


# ---- the blocking client ---------------------------------------------------------------------


@pytest.mark.parametrize(("change", "error", "words"), BAD_ORDERS)
def test_a_bad_submit_from_the_blocking_client_reaches_nothing(
    sim: ThreadedSim, change, error, words
):
    client = sim.client()
    try:
        with pytest.raises(error) as caught:
            client.submit_and_confirm(**{**ORDER, **change})
        assert_names(caught.value, words)
        old = sim.order_ids(1)[0]
        with pytest.raises(error):
            client.replace_and_confirm(old, **{**ORDER, **change})
    finally:
        client.close()
    assert sim.sim.rest_requests == []
    assert sim.sim.connect_count == 0
    assert sim.status(old) == OrderStatus.OPEN


@pytest.mark.parametrize(("bad", "named"), BAD_IDS)
def test_a_bad_id_from_the_blocking_client_reaches_nothing(sim: ThreadedSim, bad, named):
    client = sim.client()
    try:
        with pytest.raises(InvalidOrderIdError) as caught:
            client.cancel_and_confirm(bad)
        assert_names(caught.value, ("order id", named))
        with pytest.raises(InvalidOrderIdError):
            client.get_order(bad)
    finally:
        client.close()
    assert sim.sim.rest_requests == []
    assert sim.sim.connect_count == 0


# ---- the command line ------------------------------------------------------------------------

SUBMIT = ["submit", "--instrument", "BINANCE:BTC/USDT", "--side", "BUY"]


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--quantity", "-1", "--price", "1"], ("--quantity '-1'", "sign")),
        (["--quantity", "NaN", "--price", "1"], ("--quantity 'NaN'", "finite")),
        (["--quantity", "abc", "--price", "1"], ("--quantity 'abc'", "plain decimal")),
        (["--quantity", "1", "--price", "Infinity"], ("--price 'Infinity'", "finite")),
        (["--quantity", "1"], ("--price is required for a LIMIT order",)),
        (["--quantity", "1", "--type", "MARKET", "--price", "1"], ("--price must be None",)),
        (
            ["--quantity", "1", "--price", "1", "--tif", "forever"],
            ("--tif 'FOREVER'", "--unlisted"),
        ),
        (["--quantity", "1", "--price", "1", "--timeout", "inf"], ("--timeout", "finite")),
        (["--quantity", "1", "--price", "1", "--account", "acct-1"], ("account id 'acct-1'",)),
    ],
)
async def test_a_bad_submit_on_the_command_line_exits_2_before_any_connection(
    cadenza_sim, capsys, monkeypatch, flags, words
):
    clear_env(monkeypatch)(cadenza_sim)

    code = await cli.run([*SUBMIT, *flags, "--plain"])

    err = capsys.readouterr().err
    assert code == 2
    assert_names(err, words)  # type: ignore[arg-type]
    assert_untouched(cadenza_sim)
    assert cadenza_sim.submits_applied == 0


@pytest.mark.parametrize(("bad", "named"), BAD_IDS)
@pytest.mark.parametrize("command", [["cancel"], ["cancel", "--via", "ws"], ["cancel-many"]])
async def test_a_bad_id_on_the_command_line_exits_2_before_any_connection(
    cadenza_sim, capsys, monkeypatch, command, bad, named
):
    clear_env(monkeypatch)(cadenza_sim)
    ok = cadenza_sim.create_order().trade_order_id
    ids = [ok, bad] if command == ["cancel-many"] else [bad]

    code = await cli.run([*command, *ids, "--plain"])

    err = capsys.readouterr().err
    assert code == 2
    assert named in err
    assert_untouched(cadenza_sim)
    assert cadenza_sim.get_order(ok).status == OrderStatus.OPEN  # all or nothing


async def test_replace_with_a_bad_new_order_on_the_command_line_keeps_the_old_one(
    cadenza_sim, capsys, monkeypatch
):
    clear_env(monkeypatch)(cadenza_sim)
    old = cadenza_sim.create_order().trade_order_id

    code = await cli.run(
        ["replace", old, "--instrument", "X:A/B", "--side", "BUY", "--quantity", "1,5", "--plain"]
    )

    assert code == 2
    assert "--quantity '1,5'" in capsys.readouterr().err
    assert_untouched(cadenza_sim)
    assert cadenza_sim.get_order(old).status == OrderStatus.OPEN


async def test_a_market_order_on_the_command_line_fills_at_the_documented_price(
    cadenza_sim, capsys, monkeypatch
):
    clear_env(monkeypatch)(cadenza_sim)

    code = await cli.run([*SUBMIT, "--quantity", "0.5", "--type", "market", "--json"])

    out = capsys.readouterr().out
    assert code == 0
    assert '"status":"FILLED"' in out
    assert '"executedPrice":"50000.00"' in out
