"""What the chaos scenarios act with: LabServers in one namespace, the operator across restarts,
its logs with the windows of injected faults, and the recovery figures the suite reports.

Role: ``Lab`` makes and changes LabServers and reads their children as plain dicts (as the
apiserver serves them, so the oracles compare JSON with JSON); ``Operator`` is the operator as
users run it (``tests.support.operator.OperatorProcess``), any number of incarnations, all
logging into one ``LogBook`` that remembers where each fault began and ended, so that the log
oracle can tell an error caused by the fault from one that is a bug; ``measure`` times a wait
and keeps the figure for the session's summary (README "Failure modes", BENCHMARKS.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from kubernetes.client import ApiClient, AppsV1Api, CoreV1Api, CustomObjectsApi
from localcluster import processes
from tests.support.cluster import or_none
from tests.support.operator import OperatorProcess
from tests.support.waiting import eventually

GROUP, VERSION, PLURAL = "k8slab.dev", "v1alpha1", "labservers"
MANAGED_BY_SELECTOR = "app.kubernetes.io/managed-by=k8s-lab"


def _json(response: Any) -> Any:
    return json.loads(response.data)


class Lab:
    """LabServers and their children in one namespace, as plain dicts."""

    def __init__(self, api: ApiClient, namespace: str) -> None:
        self.ns = namespace
        self.objects, self.apps, self.core = CustomObjectsApi(api), AppsV1Api(api), CoreV1Api(api)

    # --- LabServers --------------------------------------------------------------------------

    def create(self, name: str, spec: dict[str, Any] | None = None) -> dict[str, Any]:
        body = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "LabServer",
            "metadata": {"name": name},
            "spec": spec or {},
        }
        # CustomObjectsApi's answers are typed `object`: they are the decoded JSON, a dict.
        created = cast(
            dict[str, Any],
            self.objects.create_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, body),
        )
        return created

    def create_many(self, names: list[str], spec: Callable[[int], dict[str, Any]] | None = None) -> None:
        """Create at once from 8 threads, as a burst of `kubectl apply`s would."""
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda i: self.create(names[i], spec(i) if spec else None), range(len(names))))

    def get(self, name: str) -> dict[str, Any] | None:
        found = cast(
            dict[str, Any] | None,
            or_none(lambda: self.objects.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)),
        )
        return found

    def labservers(self) -> list[dict[str, Any]]:
        listed = cast(
            dict[str, Any], self.objects.list_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL)
        )
        items: list[dict[str, Any]] = listed["items"]
        return items

    def set_spec(self, name: str, spec: dict[str, Any]) -> None:
        """Replace the whole spec (a JSON patch): fields left out go back to their defaults."""
        self.objects.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            self.ns,
            PLURAL,
            name,
            [{"op": "replace", "path": "/spec", "value": spec}],
            _content_type="application/json-patch+json",
        )

    def patch_spec(self, name: str, changes: dict[str, Any]) -> None:
        """A merge patch of the spec, as `kubectl patch --type=merge` sends."""
        self.objects.patch_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name, {"spec": changes})

    def delete(self, name: str) -> None:
        self.objects.delete_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name)

    # --- children and events ------------------------------------------------------------------

    def deployments(self, selector: str = MANAGED_BY_SELECTOR) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = _json(
            self.apps.list_namespaced_deployment(self.ns, label_selector=selector, _preload_content=False)
        )["items"]
        return items

    def services(self, selector: str = MANAGED_BY_SELECTOR) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = _json(
            self.core.list_namespaced_service(self.ns, label_selector=selector, _preload_content=False)
        )["items"]
        return items

    def children(self) -> dict[str, dict[str, dict[str, Any]]]:
        """{"Deployment": {name: obj}, "Service": {name: obj}} of the objects with our labels."""
        return {
            "Deployment": {d["metadata"]["name"]: d for d in self.deployments()},
            "Service": {s["metadata"]["name"]: s for s in self.services()},
        }

    def delete_deployment(self, name: str) -> None:
        self.apps.delete_namespaced_deployment(name, self.ns)

    def delete_service(self, name: str) -> None:
        self.core.delete_namespaced_service(name, self.ns)

    def labserver_events(self, reason: str) -> list[dict[str, Any]]:
        events = _json(self.core.list_namespaced_event(self.ns, _preload_content=False))["items"]
        return [
            e for e in events if e["involvedObject"].get("kind") == "LabServer" and e.get("reason") == reason
        ]


# --- the operator and its logs ------------------------------------------------------------------

ERROR_LINE = re.compile(r"\[(ERROR|CRITICAL)\s*\]")
TRACEBACK = "Traceback (most recent call last)"
Position = tuple[int, int]  # (which log file, byte offset in it)


@dataclass(frozen=True)
class Window:
    """An injected fault, from the moment it began until the cluster had recovered from it."""

    what: str
    start: Position
    end: Position

    def covers(self, position: Position) -> bool:
        return self.start <= position < self.end


@dataclass
class LogBook:
    """The operator's log files, one per incarnation in order, and the fault windows in them."""

    files: list[Path] = field(default_factory=list)
    windows: list[Window] = field(default_factory=list)

    def position(self) -> Position:
        if not self.files:
            return (0, 0)
        last = self.files[-1]
        return (len(self.files) - 1, last.stat().st_size if last.exists() else 0)

    @contextlib.contextmanager
    def fault(self, what: str) -> Iterator[None]:
        """Errors logged inside the ``with`` block are the fault's; close it once recovered."""
        start = self.position()
        try:
            yield
        finally:
            self.windows.append(Window(what, start, self.position()))

    def problems(self) -> list[str]:
        """ERROR/CRITICAL lines and tracebacks outside every fault window, as `file:line: text`."""
        found = []
        for index, path in enumerate(self.files):
            offset = 0
            data = path.read_bytes() if path.exists() else b""
            for number, raw in enumerate(data.splitlines(keepends=True), start=1):
                line = raw.decode(errors="replace").rstrip("\n")
                position = (index, offset)
                offset += len(raw)
                if not (ERROR_LINE.search(line) or TRACEBACK in line):
                    continue
                if any(window.covers(position) for window in self.windows):
                    continue
                found.append(f"{path.name}:{number}: {line}")
        return found


class Operator:
    """``kopf run operator/main.py -A`` across incarnations: start, SIGKILL, stop, start again."""

    def __init__(self, kubeconfig: Path, folder: Path) -> None:
        self.kubeconfig = kubeconfig
        self.folder = folder
        self.book = LogBook()
        self.current: OperatorProcess | None = None

    def start(self) -> None:
        log = self.folder / f"operator-{len(self.book.files) + 1}.log"
        self.book.files.append(log)
        self.current = OperatorProcess(self.kubeconfig, log)
        self.current.start()

    def kill(self) -> None:
        """SIGKILL: no graceful anything, as when the node under the operator dies."""
        if self.current is not None:
            self.current.kill()
            self.current = None

    def stop(self) -> None:
        """SIGTERM and wait: a rolling update of the operator's Deployment."""
        if self.current is not None:
            self.current.stop()
            self.current = None

    def alive(self) -> bool:
        current = self.current
        return current is not None and current.proc is not None and processes.alive(current.proc)

    def ready(self) -> bool:
        """Alive and its /readyz answers 200 (not listening counts as not ready)."""
        try:
            return self.alive() and self.current is not None and self.current.ready()
        except OSError:
            return False

    def describe(self) -> str:
        """Where to look when an oracle fails: the log files and the current log's tail."""
        tail = self.current.log_tail() if self.current is not None else "(not running)"
        return f"operator logs: {', '.join(map(str, self.book.files))}\n--- tail ---\n{tail}"


# --- recovery figures -------------------------------------------------------------------------

FIGURES: list[tuple[str, float]] = []


def record(what: str, seconds: float) -> float:
    """Keep a figure for the session summary (and CHAOS_FIGURES, a JSON-lines file, if set)."""
    FIGURES.append((what, seconds))
    print(f"chaos figure: {what}: {seconds:.1f} s")
    if target := os.environ.get("CHAOS_FIGURES"):
        with open(target, "a") as out:
            out.write(json.dumps({"what": what, "seconds": round(seconds, 2)}) + "\n")
    return seconds


def measure(
    what: str, probe: Callable[[], Any], *, since: float | None = None, timeout: float = 300
) -> float:
    """Wait for ``probe`` (as ``eventually``) and record the seconds since ``since`` (default now)."""
    start = time.monotonic() if since is None else since
    eventually(probe, timeout=timeout, interval=0.25, what=what)
    return record(what, time.monotonic() - start)
