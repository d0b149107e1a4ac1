"""``cancel_all_open`` against pagers that never end: bounded pages, no stalls, a deadline kept."""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from support import ACCOUNT_ID, SEED_ORDER

from cadenza_async import CadenzaClient, RetryPolicy, Timeouts, TransportError
from cadenza_async.http import LIST_PATH

WS = "ws://127.0.0.1:9/connection/websocket"
PAGE = 50


def order(order_id: str, status: str = "CANCELLED") -> dict[str, Any]:
    return {**SEED_ORDER, "tradeOrderId": order_id, "status": status}


def page_body(orders: list[dict[str, Any]], **pagination: Any) -> bytes:
    return msgspec.json.encode(
        {"data": orders, "success": True, "errno": 0, "error": None, "pagination": pagination}
    )


class EndlessPager:
    """A list endpoint on loopback that answers every page with ``hasNext: true``, forever.

    ``fresh``: each page holds new ids (else the same page again). ``cursor``:
    the cursor to hand out (a constant one never advances), or None.
    Every listed order is already final, so nothing is cancelled afterwards.
    """

    def __init__(self, *, fresh: bool, cursor: str | None = None) -> None:
        self.fresh = fresh
        self.cursor = cursor
        self.queries: list[dict[str, str]] = []
        self._ids = itertools.count()
        app = web.Application()
        app.router.add_get(LIST_PATH, self._list)
        self.server = TestServer(app, host="127.0.0.1")

    @property
    def url(self) -> str:
        return str(self.server.make_url("")).rstrip("/")

    async def _list(self, request: web.Request) -> web.StreamResponse:
        self.queries.append(dict(request.query))
        if self.fresh:
            ids = [str(uuid.UUID(int=next(self._ids))) for _ in range(PAGE)]
        else:
            ids = [str(uuid.UUID(int=n)) for n in range(PAGE)]
        pagination: dict[str, Any] = {"hasNext": True, "limit": PAGE}
        if self.cursor is not None:
            pagination["cursor"] = self.cursor
        return web.Response(
            body=page_body([order(i) for i in ids], **pagination), content_type="application/json"
        )


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[EndlessPager]]]:
    started: list[EndlessPager] = []

    async def start(**options: Any) -> EndlessPager:
        pager = EndlessPager(**options)
        await pager.server.start_server()
        started.append(pager)
        return pager

    yield start
    for pager in started:
        await pager.server.close()


def make_client(url: str, *, confirm: float = 10.0) -> CadenzaClient:
    return CadenzaClient(
        token="tok-pager",
        api_url=url,
        ws_url=WS,
        timeouts=Timeouts(connect=1.0, request=1.0, confirm=confirm),
        retry=RetryPolicy(attempts=1),
    )


async def test_an_endless_pager_of_fresh_pages_stops_at_the_deadline(serve):
    pager = await serve(fresh=True)
    client = make_client(pager.url)
    loop = asyncio.get_running_loop()
    began = loop.time()
    try:
        with pytest.raises(TransportError):
            await client.cancel_all_open(ACCOUNT_ID, timeout=0.5, page_size=PAGE)
    finally:
        await client.aclose()
    elapsed = loop.time() - began
    assert elapsed < 0.5 + 0.5, f"took {elapsed:.3f}s for timeout=0.5"
    assert len(pager.queries) > 1  # it did page for a while


async def test_without_a_timeout_the_listing_is_bounded_by_timeouts_confirm(serve):
    pager = await serve(fresh=True)
    client = make_client(pager.url, confirm=0.4)
    loop = asyncio.get_running_loop()
    began = loop.time()
    try:
        with pytest.raises(TransportError):
            await client.cancel_all_open(ACCOUNT_ID, page_size=PAGE)
    finally:
        await client.aclose()
    assert loop.time() - began < 0.4 + 0.5


async def test_an_endless_pager_stops_at_max_pages(serve, caplog):
    pager = await serve(fresh=True)
    client = make_client(pager.url)
    try:
        with caplog.at_level(logging.WARNING, logger="cadenza_async.client"):
            results = await client.cancel_all_open(ACCOUNT_ID, page_size=PAGE, max_pages=7)
    finally:
        await client.aclose()
    assert results == []  # every listed order was already final
    assert len(pager.queries) == 7
    assert [q["offset"] for q in pager.queries] == [str(PAGE * n) for n in range(7)]
    assert "max_pages=7" in caplog.text


async def test_a_pager_that_repeats_the_same_page_stops_after_the_second(serve, caplog):
    pager = await serve(fresh=False)
    client = make_client(pager.url)
    try:
        with caplog.at_level(logging.WARNING, logger="cadenza_async.client"):
            await client.cancel_all_open(ACCOUNT_ID, page_size=PAGE)
    finally:
        await client.aclose()
    assert len(pager.queries) == 2
    assert "stopped advancing" in caplog.text


async def test_a_cursor_that_does_not_move_stops_the_listing(serve, caplog):
    pager = await serve(fresh=True, cursor="same-cursor")
    client = make_client(pager.url)
    try:
        with caplog.at_level(logging.WARNING, logger="cadenza_async.client"):
            await client.cancel_all_open(ACCOUNT_ID, page_size=PAGE)
    finally:
        await client.aclose()
    assert len(pager.queries) == 2
    assert "offset" in pager.queries[0]
    assert pager.queries[1].get("cursor") == "same-cursor"
    assert "offset" not in pager.queries[1]  # a cursor, once given, replaces the offset
    assert "stopped advancing" in caplog.text


async def test_max_pages_must_be_positive(serve):
    pager = await serve(fresh=True)
    client = make_client(pager.url)
    try:
        with pytest.raises(ValueError, match="max_pages"):
            await client.cancel_all_open(ACCOUNT_ID, max_pages=0)
    finally:
        await client.aclose()
