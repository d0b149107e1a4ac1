"""The ``cadenza-async`` command line: demo, sim, cancel, cancel-many, cancel-all, watch.

Real endpoints come from the ``CADENZA_*`` environment variables (or flags);
``--json`` prints one JSON object per line for scripts. Progress bars and
tables use ``rich`` when it is installed (the ``cli`` extra) and plain text
otherwise; the library itself never imports it.

Exit status: 0 every order reached a final state (an order that filled before
the cancel is an outcome, shown with ``cancelled: false``); 1 at least one
cancel failed with an error; 2 a usage or configuration error; 130 interrupted.
Errors print one line, never a traceback, never the token.
"""

from __future__ import annotations

from ._main import main, run

__all__ = ["main", "run"]
