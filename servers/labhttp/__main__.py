"""Entry point for ``python -m labhttp``; all the work is in ``labhttp.cli``.

The ``__name__`` guard matters: ``--workers`` starts its processes with the ``spawn`` method,
which re-imports this module in each child under another name and must not run ``main`` there.
"""

import sys

from labhttp.cli import main

if __name__ == "__main__":
    sys.exit(main())
