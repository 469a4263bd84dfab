"""Loaded by Python at start when this folder is on PYTHONPATH (bench/bench_memory.py puts it there).

Role: with MEMTRACE_OUT set, start tracemalloc (MEMTRACE_FRAMES frames, default 25) and dump a
snapshot to MEMTRACE_OUT on SIGUSR1, so that the operator runs unchanged (``kopf run``) and is
still measured from outside. With MEMSTATS_OUT instead, SIGUSR1 writes the allocators' state
there, untraced (``bench/first_pass_memory.py`` uses it). Without either it does nothing.
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


_STATS = os.environ.get("MEMSTATS_OUT")
if _STATS and not _OUT:

    def _allocator_stats(signum: int, frame: object) -> None:
        """SIGUSR1 with MEMSTATS_OUT (and no MEMTRACE_OUT): where the RSS sits, untraced. VmRSS;
        glibc's heap (mallinfo2: in use, free) before and after a full collection and
        malloc_trim; CPython's small-object allocator (arenas, bytes in used blocks, bytes free
        inside kept arenas: the fragmentation); the most common object types the collector
        tracks (frozen import-time objects excluded)."""
        import collections
        import ctypes
        import gc
        import sys
        import tempfile

        class MallInfo2(ctypes.Structure):
            _fields_ = [
                (name, ctypes.c_size_t)
                for name in (
                    "arena",
                    "ordblks",
                    "smblks",
                    "hblks",
                    "hblkhd",
                    "usmblks",
                    "fsmblks",
                    "uordblks",
                    "fordblks",
                    "keepcost",
                )
            ]

        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = MallInfo2

        def status() -> list[str]:
            with open("/proc/self/status") as f:
                return [line.strip() for line in f if line.startswith(("VmRSS", "VmHWM", "RssAnon"))]

        def glibc(label: str) -> str:
            info = libc.mallinfo2()
            return (
                f"glibc {label}: heap {info.arena / 2**20:.1f} MiB, in use {info.uordblks / 2**20:.1f},"
                f" free {info.fordblks / 2**20:.1f}, mmapped {info.hblkhd / 2**20:.1f}"
            )

        lines = [*status(), glibc("as found")]
        gc.collect()
        libc.malloc_trim(0)
        lines += [glibc("after collect+trim"), *status()]
        with tempfile.TemporaryFile("w+") as tmp:  # _debugmallocstats writes to the C stderr
            saved = os.dup(2)
            os.dup2(tmp.fileno(), 2)
            try:
                sys._debugmallocstats()
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            tmp.seek(0)
            lines += [
                line
                for line in tmp.read().splitlines()
                if line.startswith(("# arenas", "# bytes in", "Total")) and "arena map" not in line
            ][:8]
        tracked = gc.get_objects()
        lines.append(f"objects tracked: {len(tracked)}, frozen: {gc.get_freeze_count()}")
        common = collections.Counter(type(o).__qualname__ for o in tracked).most_common(15)
        lines += [f"  {count:8d} {name}" for name, count in common]
        with open(_STATS + ".tmp", "w") as f:
            f.write("\n".join(lines) + "\n")
        os.replace(_STATS + ".tmp", _STATS)

    signal.signal(signal.SIGUSR1, _allocator_stats)
