"""``python -m labop [flags]``: the operator without the kopf CLI, settings from flags and env.

Role: parse ``OperatorSettings``, then run kopf in-process with the same handlers that
``kopf run operator/main.py`` loads, so that the operator can take real flags (kopf's CLI
owns the command line otherwise).
"""

from __future__ import annotations

import asyncio
import os
import sys

import kopf

from labop import handlers
from labop.settings import SettingsError, parse_args


def main(argv: list[str] | None = None) -> int:
    """``python -m labop`` and the ``labop`` console script (argv: the flags, default sys.argv's)."""
    try:
        settings = parse_args(sys.argv[1:] if argv is None else argv, os.environ)
    except SettingsError as err:
        print(f"labop: {err}", file=sys.stderr)
        return 2
    # What `kopf run --log-format` does; our lines follow it (handlers.follow_kopf_log_format).
    kopf.configure(verbose=False, log_format=kopf.LogFormat[settings.log_format.upper()])
    memo = kopf.Memo({handlers.SETTINGS_MEMO_KEY: settings})
    asyncio.run(
        kopf.operator(
            memo=memo,
            clusterwide=settings.clusterwide,
            namespaces=list(settings.namespaces),
            standalone=True,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
