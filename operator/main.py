"""The kopf entry point: ``kopf run operator/main.py -A`` (or ``-n NAMESPACE``).

kopf puts this file's folder (``operator/``) on ``sys.path`` and loads it, so the ``labop``
package beside it is importable (it is installed too, by ``make venv``; the image puts ``labkit``
beside it as well); importing ``labop.handlers`` registers every handler. Logs follow kopf's
``--log-format`` (see ``labop.handlers.follow_kopf_log_format``).
Settings come from ``LABOP_*`` environment variables (see the README), since kopf owns the flags.
"""

import labop.handlers  # noqa: F401  (registers the kopf handlers)
