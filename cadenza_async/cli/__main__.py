"""``python -m cadenza_async.cli``: the same as the ``cadenza-async`` command."""

import sys

from ._main import main

sys.exit(main())
