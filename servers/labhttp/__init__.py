"""labhttp: the lab HTTP server that the k8s-lab operator's pods run.

Day 38 of the lab taught a Go server answering ``/`` and ``/health``, and several servers in
one process, each with its own router. This package is that lesson, production-shaped, on
aiohttp. Module map:

- ``settings``  -- the frozen Settings, built once at start from flags and LABHTTP_* env.
- ``state``     -- process-wide readiness and the in-flight request count.
- ``metrics``   -- the explicit Prometheus registry and the request metrics on it.
- ``observe``   -- the middleware that times each request into metrics and the access log.
- ``app``       -- ``make_app``: one aiohttp application (one router) per listener.
- ``serve``     -- runners and sites, signals, graceful shutdown, for one process.
- ``workers``   -- ``--workers N``: a parent supervising N serving processes (SO_REUSEPORT).
- ``cli``       -- ``main()``: settings, logging, then serve or supervise; exit statuses.

Logs are one line each, logfmt or JSON, written by ``labkit.logs`` (shared with the operator).
"""

__version__ = "0.1.0"
