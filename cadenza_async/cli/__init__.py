"""The ``cadenza-async`` command line: demo, sim, orders, cancel(-many, -all), submit, replace, watch, doctor.

Real endpoints come from the ``CADENZA_*`` environment variables (or flags);
``--json`` prints one JSON object per line for scripts. Progress bars and
tables use ``rich`` when it is installed (the ``cli`` extra) and plain text
otherwise; the library itself never imports it.

Exit status: 0 every order reached a final state (an order that filled before
the cancel, or was already final, is an outcome); 1 at least one cancel failed
with an error; 2 a usage or configuration error, or a refused token; 130
interrupted; 141 stdout closed by its reader (``| head``). Errors print one
line, never a traceback, never the token; text from a server is printed
without its control characters.

The package: ``_main`` (parser, entry points), ``_session`` (the client from
flags and environment), ``_commands``, ``_placing`` (``submit`` and
``replace``, with exit statuses of their own: 0 the new order accepted, 1
refused or unproven), ``_sim``, ``_demo``, ``_outcomes`` (what each cancel
came to), ``_errors`` (what a failure means), ``_output`` (where everything
is written); ``doctor`` lives in ``_doctor`` and the
modules it names (``_netprobe``, ``_wsprobe`` and the other ``_doctor_*``),
with its own exit statuses (0 no check failed, 1 one did, 2 usage).
"""

from __future__ import annotations

from ._main import main, run

__all__ = ["main", "run"]
