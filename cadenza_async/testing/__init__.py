"""Test helpers for SDK users: the exchange simulator and its pytest fixture.

``CadenzaSimulator`` is a local Cadenza exchange (REST + Centrifugo WebSocket)
to run clients against offline; see :mod:`cadenza_async.testing.simulator`.
``serve`` runs one until cancelled (``python -m cadenza_async.testing``).
With pytest, the ``cadenza_sim`` fixture gives a started simulator; see
:mod:`cadenza_async.testing.pytest_plugin`.
"""

from __future__ import annotations

from ._engine import ERRNO_NOT_CANCELLABLE, ERRNO_NOT_FOUND
from ._serve import serve
from .simulator import CadenzaSimulator

__all__ = ["ERRNO_NOT_CANCELLABLE", "ERRNO_NOT_FOUND", "CadenzaSimulator", "serve"]
