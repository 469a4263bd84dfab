"""labkit: what the operator (``labop``) and the lab HTTP server (``labhttp``) share.

Today one module, ``logs``: one way to write log lines, plain ``key=value`` or JSON, with the
context of the work at hand (namespace, name, controller, reconcile id) carried by contextvars.
It depends on the standard library only, so both images carry it as it is.
"""
