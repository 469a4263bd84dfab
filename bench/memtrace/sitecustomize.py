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
                        if ref is level or ref is found:
                            continue
                        desc = type(ref).__qualname__
                        frame = (
                            getattr(ref, "cr_frame", None)
                            or getattr(ref, "ag_frame", None)
                            or getattr(ref, "gi_frame", None)
                        )
                        if frame is not None:
                            desc += f" {ref.__qualname__} at {frame.f_code.co_filename}:{frame.f_lineno}"
                        if type(ref).__name__ == "frame":
                            desc += f" {ref.f_code.co_filename}:{ref.f_lineno} {ref.f_code.co_name}"
                            lines.append("  " * (depth + 1) + desc)
                            continue
                        if isinstance(ref, dict):
                            desc += " keys=" + ",".join(map(str, list(ref)[:6]))
                        lines.append("  " * (depth + 1) + desc)
                        nxt.append(ref)
                level = nxt[:4]
            lines.append("-")
        with open(_OUT + ".refs", "w") as f:
            f.write("\n".join(lines))

    signal.signal(signal.SIGUSR2, _referrers)


if _OUT:

    def _iterator_holders(signum: int, frame: object) -> None:
        """SIGPWR: for the list holding a raw LabServer, who holds its iterator (frames named)."""
        import gc

        lines = []
        for o in gc.get_objects():
            if (
                isinstance(o, dict)
                and o.get("kind") == "LabServer"
                and "managedFields" in (o.get("metadata") or {})
            ):
                for lst in gc.get_referrers(o):
                    if not isinstance(lst, list) or len(lst) < 2:
                        continue
                    lines.append(f"list of {len(lst)}")
                    for it in gc.get_referrers(lst):
                        lines.append(f"  {type(it).__qualname__}")
                        for holder in gc.get_referrers(it):
                            name = type(holder).__qualname__
                            code = getattr(holder, "f_code", None)
                            if code is not None:
                                name += f" frame {code.co_filename}:{holder.f_lineno} {code.co_name}"
                            for attr in ("cr_frame", "ag_frame", "gi_frame"):
                                fr = getattr(holder, attr, None)
                                if fr is not None:
                                    name += f" {holder.__qualname__} {fr.f_code.co_filename}:{fr.f_lineno}"
                            lines.append(f"    {name}")
                            if name.startswith("frame"):
                                f = holder
                                while f is not None:
                                    lines.append(
                                        f"      < {f.f_code.co_filename}:{f.f_lineno} {f.f_code.co_name}"
                                    )
                                    f = f.f_back
                break
        with open(_OUT + ".iters", "w") as f:
            f.write("\n".join(lines))

    signal.signal(signal.SIGPWR, _iterator_holders)
