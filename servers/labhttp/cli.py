"""``main()``: from argv and environment to an exit status.

Builds ``settings.Settings`` once, configures logging (``labkit.logs``), then either serves in this process
(``serve``) or supervises ``--workers`` processes (``workers``). Exit statuses: 0 after a
graceful shutdown; 2 when the settings are wrong or a listener cannot be bound, reported as one
``labhttp: error: ...`` line on stderr and never a traceback; 1 when a worker dies unexpectedly.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping, Sequence

from labhttp.serve import StartupError, log_serving, serve
from labhttp.settings import SettingsError, load_settings
from labkit.logs import configure_logging

EXIT_OK = 0
EXIT_USAGE = 2


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    try:
        settings = load_settings(
            sys.argv[1:] if argv is None else argv, os.environ if environ is None else environ
        )
    except SettingsError as exc:
        return fail(str(exc))
    configure_logging(settings.log_format, own="labhttp")
    try:
        if settings.workers > 1:
            # Imported here: only the supervisor needs multiprocessing.
            from labhttp.workers import supervise

            return supervise(settings)
        asyncio.run(serve(settings, on_ready=lambda bound: log_serving(settings, bound)))
    except StartupError as exc:
        return fail(str(exc))
    return EXIT_OK


def fail(message: str) -> int:
    print(f"labhttp: error: {message}", file=sys.stderr)
    return EXIT_USAGE
