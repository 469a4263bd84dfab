"""Loaded by Python at start when this folder is on PYTHONPATH (bench/bench_memory.py puts it there).

Role: with MEMTRACE_OUT set, start tracemalloc (MEMTRACE_FRAMES frames, default 25) and dump a
snapshot to MEMTRACE_OUT on SIGUSR1, so that the operator runs unchanged (``kopf run``) and is
still measured from outside. Without MEMTRACE_OUT it does nothing.
"""

import os
import signal
import tracemalloc

_OUT = os.environ.get("MEMTRACE_OUT")
if _OUT:
    # The heavy imports first, untraced: tracing them costs minutes and hundreds of MB, and what
    # they allocate is the same in every run. labop.handlers registers the handlers once; kopf's
    # loading of operator/main.py finds it imported.
    import kopf  # noqa: F401
    import kubernetes  # noqa: F401

    import labop.handlers  # noqa: F401

    tracemalloc.start(int(os.environ.get("MEMTRACE_FRAMES", "12")))

    def _dump(signum: int, frame: object) -> None:
        tracemalloc.take_snapshot().dump(_OUT + ".tmp")
        os.replace(_OUT + ".tmp", _OUT)

    signal.signal(signal.SIGUSR1, _dump)

    def _referrers(signum: int, frame: object) -> None:
        """Who holds the raw LabServer bodies (dicts with managedFields): three levels of referrers."""
        import gc

        found = [
            o
            for o in gc.get_objects()
            if isinstance(o, dict)
            and o.get("kind") == "LabServer"
            and "managedFields" in (o.get("metadata") or {})
        ]
        lines = [f"raw LabServer bodies alive: {len(found)}"]
        for body in found[:3]:
            level = [body]
            for depth in range(4):
                nxt = []
                for obj in level:
                    for ref in gc.get_referrers(obj):
                        if ref is level or ref is found or type(ref).__name__ == "frame":
                            continue
                        desc = type(ref).__qualname__
                        if isinstance(ref, dict):
                            desc += " keys=" + ",".join(map(str, list(ref)[:6]))
                        lines.append("  " * (depth + 1) + desc)
                        nxt.append(ref)
                level = nxt[:4]
            lines.append("-")
        with open(_OUT + ".refs", "w") as f:
            f.write("\n".join(lines))

    signal.signal(signal.SIGUSR2, _referrers)
