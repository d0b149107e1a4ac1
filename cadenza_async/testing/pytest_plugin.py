"""pytest plugin: the ``cadenza_sim`` fixture (a running simulator).

Installed with the package (entry point ``pytest11``), so any test can ask for it::

    async def test_cancel_is_confirmed(cadenza_sim):
        order = cadenza_sim.create_order()
        async with CadenzaClient(
            token=cadenza_sim.token, api_url=cadenza_sim.api_url, ws_url=cadenza_sim.ws_url
        ) as client:
            result = await client.cancel_and_confirm(order.trade_order_id)
        assert result.cancelled

    @pytest.mark.cadenza_sim(cancel_delay=0.05, ping_interval=0.5)
    async def test_with_exchange_delay(cadenza_sim): ...

The marker's keyword arguments go to :class:`~cadenza_async.testing.CadenzaSimulator`.
The fixture starts the simulator on a free loopback port before the test and
stops it afterwards (closing every connection, cancelling every timer). It is
an async fixture: it needs pytest-asyncio (``asyncio_mode = "auto"``, or mark
the test ``@pytest.mark.asyncio``), and an ``async def`` test. The simulator
runs on the test's event loop, which does not run while a plain ``def`` test
does: such a test fails at once, pointing to the recipe for a blocking
strategy (docs/guides/testing.md, "A blocking strategy under test").
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import pytest

from .simulator import CadenzaSimulator

__all__ = ["cadenza_sim", "pytest_configure"]

MARKER = "cadenza_sim"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): options for the cadenza_sim fixture's CadenzaSimulator "
        "(cancel_delay, accept_delay, ping_interval, pong_timeout, history_size, event_shape, ...)",
    )


def _options(request: pytest.FixtureRequest) -> dict[str, Any]:
    options: dict[str, Any] = {}
    # Closest marker last, so a function's marker overrides a module's or class's.
    for marker in reversed(list(request.node.iter_markers(MARKER))):
        if marker.args:
            raise pytest.UsageError(f"@pytest.mark.{MARKER} takes keyword arguments only")
        options.update(marker.kwargs)
    return options


try:
    import pytest_asyncio

    _fixture: Any = pytest_asyncio.fixture
except ImportError:  # pragma: no cover - pytest-asyncio is a dev dependency
    _fixture = pytest.fixture

_F = TypeVar("_F", bound=Callable[..., Any])


def _async_fixture(func: _F) -> _F:
    result: _F = _fixture(func)
    return result


SYNC_TEST_MESSAGE = (
    "cadenza_sim serves the simulator on the test's event loop, which does not run while "
    "the plain `def` test {name} does: every call to it would hang until its timeout. "
    "Make the test `async def` (with CadenzaClient), or, to test BlockingCadenzaClient, "
    "run the simulator on a thread of its own: see docs/guides/testing.md, "
    '"A blocking strategy under test".'
)


def _refuse_sync_test(request: pytest.FixtureRequest) -> None:
    test = getattr(request.node, "obj", None)
    if test is not None and not inspect.iscoroutinefunction(test):
        pytest.fail(SYNC_TEST_MESSAGE.format(name=request.node.name), pytrace=False)


@_async_fixture
async def cadenza_sim(request: pytest.FixtureRequest) -> AsyncIterator[CadenzaSimulator]:
    """A started :class:`CadenzaSimulator`; options from ``@pytest.mark.cadenza_sim(...)``.

    Fails the test at once when it is a plain ``def`` test (see the module docstring).
    """
    _refuse_sync_test(request)
    async with CadenzaSimulator(**_options(request)) as sim:
        yield sim
