"""The open orders of an account, listed page by page with the one pager, within a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .errors import CadenzaError
from .models import TradeOrder, is_terminal
from .protocol.proof import Pager

if TYPE_CHECKING:
    from .http import OrderPage

__all__ = ["list_open"]


async def list_open(
    list_orders: Callable[..., Awaitable[OrderPage]],
    account: str,
    instrument_id: str | None,
    *,
    page_size: int,
    max_pages: int,
    deadline: float,
) -> tuple[list[TradeOrder], str]:
    """The account's non-terminal orders, and why the listing ended early ("" when it did not).

    Pages follow the server's cursor when it gives one, else offsets
    (:class:`~cadenza_async.protocol.proof.Pager`). The listing ends early at
    a page with no order not seen before or a cursor that did not move (a
    stall), at ``max_pages``, or when ``deadline`` (event-loop time) comes:
    what was found until then is returned. ``list_orders`` is
    :meth:`HttpApi.list_orders`; its error is raised only when nothing was
    listed yet or the deadline has not come.
    """
    pager = Pager(page_size, max_pages)
    found: list[TradeOrder] = []
    ended = ""
    while (request := pager.request()) is not None:
        offset, cursor = request
        query: dict[str, Any] = {
            "trading_account_id": account,
            "instrument_id": instrument_id,
            "limit": page_size,
            "offset": offset,
            "cursor": cursor,
            "deadline": deadline,
        }
        try:
            page = await list_orders(**query)
        except CadenzaError as exc:
            if not pager.seen or asyncio.get_running_loop().time() < deadline:
                raise
            ended = f"the deadline came ({type(exc).__name__})"
            break
        pagination = page.pagination
        new = set(
            pager.take(
                (o.trade_order_id for o in page.orders),
                len(page.orders),
                None if pagination is None else pagination.has_next,
                None if pagination is None else pagination.cursor,
            )
        )
        found += [o for o in page.orders if o.trade_order_id in new and not is_terminal(o.status)]
    if pager.stalled:
        ended = "it stopped advancing"
    elif pager.exhausted:
        ended = f"it still had more after max_pages={max_pages} pages"
    return found, ended
