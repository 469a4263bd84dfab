"""The chaos suite's oracles: what must hold after any fault, as reusable checks.

Role: every scenario ends with ``assert_steady_state``, which runs them all: every LabServer
converges (Ready=True and status.observedGeneration == metadata.generation); each owns exactly
one Deployment and one Service and nothing with our labels is orphaned once the garbage collector
had time; the children match the spec (the operator's own pure builders, ``parse_spec`` +
``build_deployment``/``build_service``, give the fields we own; the pod template delivers the
message unchanged under Kubernetes' `$(VAR)` expansion); reverting to an earlier spec restores
the earlier children; the operator process is alive with /readyz 200; and its log has no ERROR
line and no traceback outside the fault windows the scenario declared.
Why separate: the scenarios read as sentences and the same definition of "healthy" applies to
all of them. The ``*_problems`` functions return what is wrong (empty when fine) so that
``eventually`` can poll them and a failure lists every problem at once.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from typing import Any

from tests.chaos.lab import Lab, Operator, measure
from tests.support.expansion import expand as expand_bytes
from tests.support.waiting import NotYet, eventually

from labop.builders import ENV_MESSAGE, build_deployment, build_service
from labop.settings import from_env
from labop.spec import parse_quantity, parse_spec

# Ceilings for a loaded 2-core machine, not performance assertions (100 LabServers take about 25 s
# there): generous, yet a wedged LabServer fails a scenario in a minute or two, not five.
CONVERGE_BASE = 90.0
CONVERGE_PER_LABSERVER = 2.0
GC_TIMEOUT = 120.0


def default_image() -> str:
    """The image the operator fills in, from the same environment the operator inherits."""
    return from_env(os.environ).default_image


def _ready(ls: dict[str, Any]) -> bool:
    conditions = (ls.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _describe_conditions(ls: dict[str, Any]) -> str:
    conditions = (ls.get("status") or {}).get("conditions") or []
    return ", ".join(f"{c.get('type')}={c.get('status')}/{c.get('reason')}" for c in conditions) or "none"


# --- convergence --------------------------------------------------------------------------------


def convergence_problems(lab: Lab) -> list[str]:
    """LabServers that are not Ready or whose status is about an older generation."""
    problems = []
    for ls in lab.labservers():
        meta, status = ls["metadata"], ls.get("status") or {}
        if meta.get("deletionTimestamp"):
            continue
        observed, generation = status.get("observedGeneration"), meta.get("generation")
        if not _ready(ls) or observed != generation:
            problems.append(
                f"{meta['name']}: generation {generation} observed {observed}; {_describe_conditions(ls)}"
            )
    return problems


def no_problems(problems_of: Any, *args: Any) -> Any:
    """A probe for ``eventually``: true once ``problems_of(*args)`` is empty; else it raises
    ``NotYet`` with the problems, so that a timeout says what was still wrong."""

    def probe() -> bool:
        problems = problems_of(*args)
        if problems:
            raise NotYet(f"{len(problems)} problem(s): " + "; ".join(problems[:8]))
        return True

    return probe


def converge_timeout(lab: Lab) -> float:
    return CONVERGE_BASE + CONVERGE_PER_LABSERVER * len(lab.labservers())


def wait_converged(lab: Lab, *, timeout: float | None = None) -> None:
    eventually(
        no_problems(convergence_problems, lab),
        timeout=timeout or converge_timeout(lab),
        interval=0.25,
        what="all converged",
    )


def measure_convergence(lab: Lab, what: str, *, since: float | None = None) -> float:
    """Wait until all converged; record and return the seconds since ``since`` (default now)."""
    return measure(what, no_problems(convergence_problems, lab), since=since, timeout=converge_timeout(lab))


# --- ownership ----------------------------------------------------------------------------------


def _controller_uid(obj: dict[str, Any]) -> str | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "LabServer":
            return str(ref.get("uid"))
    return None


def ownership_problems(lab: Lab) -> list[str]:
    """Each LabServer controls exactly one Deployment and one Service of its name; every object
    with our labels is controlled by a LabServer that still exists (no orphans)."""
    labservers = {ls["metadata"]["uid"]: ls["metadata"]["name"] for ls in lab.labservers()}
    problems = []
    for kind, objects in lab.children().items():
        owned: dict[str, list[str]] = {uid: [] for uid in labservers}
        for name, obj in sorted(objects.items()):
            uid = _controller_uid(obj)
            if uid is None or uid not in labservers:
                problems.append(f"orphan {kind} {name} (controller uid {uid} is no LabServer)")
            else:
                owned[uid].append(name)
        for uid, names in owned.items():
            if names != [labservers[uid]]:
                problems.append(f"LabServer {labservers[uid]} controls {kind}s {names}, not exactly itself")
    return problems


def wait_owned_once_no_orphans(lab: Lab, *, timeout: float = GC_TIMEOUT) -> None:
    eventually(
        no_problems(ownership_problems, lab),
        timeout=timeout,
        interval=0.5,
        what="one Deployment and one Service per LabServer, no orphan",
    )


# --- consistency ----------------------------------------------------------------------------------

ZERO_VALUES: tuple[Any, ...] = ("", [], {}, None, 0, False)  # what the API leaves out (omitempty)


def _differences(want: Any, got: Any, path: str, out: list[str]) -> None:
    """Where ``got`` (live) differs from ``want`` (built) in the fields ``want`` sets: the fields we
    own. Extra fields the apiserver defaults are ignored; lists must match item by item."""
    if isinstance(want, dict):
        if not isinstance(got, dict):
            out.append(f"{path}: want an object, got {got!r}")
            return
        for key, value in want.items():
            if key not in got:
                if value not in ZERO_VALUES:
                    out.append(f"{path}.{key}: missing, want {value!r}")
                continue
            _differences(value, got[key], f"{path}.{key}", out)
    elif isinstance(want, list):
        if not isinstance(got, list) or len(got) != len(want):
            out.append(f"{path}: want {want!r}, got {got!r}")
            return
        for index, (w, g) in enumerate(zip(want, got, strict=True)):
            _differences(w, g, f"{path}[{index}]", out)
    elif ".resources." in path and isinstance(want, str | int) and isinstance(got, str | int):
        # The apiserver stores quantities in canonical form (0.5 -> 500m): compare amounts.
        if parse_quantity(want) != parse_quantity(got):
            out.append(f"{path}: want {want!r}, got {got!r}")
    elif want != got:
        out.append(f"{path}: want {want!r}, got {got!r}")


def expand(value: str, defined: dict[str, str]) -> str:
    """What a container receives for ``value`` in env/command/args (see ``tests.support.expansion``)."""
    return expand_bytes(value, defined).decode(errors="replace")


# The kubelet defines these for every container, even with enableServiceLinks false.
KUBELET_DEFINED = ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "KUBERNETES_PORT")


def served_message(deployment: dict[str, Any]) -> str:
    """The message the pods of ``deployment`` receive, as the kubelet would hand it over.

    Channels understood: LABHTTP_MESSAGE as a value (expanded), LABHTTP_MESSAGE from a field of
    the pod (a downward-API annotation or label, not expanded), `--message` in the args
    (expanded). Another channel fails here, on purpose: extend this function with it.
    """
    template = deployment["spec"]["template"]
    container = template["spec"]["containers"][0]
    defined = {name: f"<{name}>" for name in KUBELET_DEFINED}
    message: str | None = None
    for env in container.get("env") or []:
        if "valueFrom" in env:
            path = (env["valueFrom"].get("fieldRef") or {}).get("fieldPath", "")
            found = re.fullmatch(r"metadata\.(annotations|labels)\['(.+)'\]", path)
            resolved = (template["metadata"].get(found[1]) or {}).get(found[2], "") if found else None
        else:
            resolved = expand(env.get("value", ""), defined)
        if env["name"] == ENV_MESSAGE:
            if resolved is None:
                raise AssertionError(f"{ENV_MESSAGE} comes from {env['valueFrom']}: teach served_message")
            message = resolved
        if resolved is not None:
            defined[env["name"]] = resolved
    args = [*(container.get("command") or []), *(container.get("args") or [])]
    for index, arg in enumerate(args):
        if arg == "--message" and index + 1 < len(args):
            message = expand(args[index + 1], defined)
        elif arg.startswith("--message="):
            message = expand(arg.removeprefix("--message="), defined)
    if message is None:
        raise AssertionError("no message channel found in the pod template: teach served_message")
    return message


def consistency_problems(lab: Lab, image: str | None = None) -> list[str]:
    """Children that differ from what the operator's own builders make of the current spec."""
    image = image or default_image()
    children = lab.children()
    problems = []
    for ls in lab.labservers():
        name = ls["metadata"]["name"]
        spec = parse_spec(ls.get("spec"), default_image=image)
        wanted = {"Deployment": build_deployment(ls, spec), "Service": build_service(ls, spec)}
        for kind, want in wanted.items():
            got = children[kind].get(name)
            if got is None:
                problems.append(f"{kind} {name}: missing")
                continue
            found: list[str] = []
            _differences({"metadata": want["metadata"], "spec": want["spec"]}, got, kind, found)
            problems += [f"{name}: {difference}" for difference in found]
        deployment = children["Deployment"].get(name)
        if deployment is not None:
            try:
                received = served_message(deployment)
            except AssertionError as err:
                problems.append(f"{name}: {err}")
            else:
                if received != spec.message:
                    problems.append(
                        f"{name}: pods receive the message {received!r}, spec says {spec.message!r}"
                    )
    return problems


def assert_children_match_specs(lab: Lab) -> None:
    problems = consistency_problems(lab)
    assert not problems, f"{len(problems)} difference(s):\n" + "\n".join(problems[:20])


# --- recovery -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    """Specs of some LabServers and the owned fields of their children, taken when converged."""

    specs: dict[str, dict[str, Any]]
    children: dict[str, dict[str, Any]]


def _owned_projection(lab: Lab, names: list[str]) -> dict[str, Any]:
    """Per name, the live children's labels and spec at exactly the paths our builders set."""
    children = lab.children()
    image = default_image()
    out: dict[str, Any] = {}
    for ls in lab.labservers():
        name = ls["metadata"]["name"]
        if name not in names:
            continue
        spec = parse_spec(ls.get("spec"), default_image=image)
        wanted = {"Deployment": build_deployment(ls, spec), "Service": build_service(ls, spec)}
        out[name] = {
            kind: _project(
                {"labels": want["metadata"]["labels"], "spec": want["spec"]},
                {
                    "labels": children[kind][name]["metadata"].get("labels"),
                    "spec": children[kind][name]["spec"],
                },
            )
            for kind, want in wanted.items()
        }
    return out


def _project(shape: Any, live: Any) -> Any:
    """``live`` restricted to the keys present in ``shape`` (lists item by item)."""
    if isinstance(shape, dict) and isinstance(live, dict):
        return {key: _project(value, live.get(key)) for key, value in shape.items()}
    if isinstance(shape, list) and isinstance(live, list):
        return [_project(s, item) for s, item in zip(shape, live, strict=False)] + live[len(shape) :]
    return live


def snapshot(lab: Lab, names: list[str]) -> Snapshot:
    """Call when converged: the earlier state that reverting must restore."""
    specs = {ls["metadata"]["name"]: ls["spec"] for ls in lab.labservers() if ls["metadata"]["name"] in names}
    return Snapshot(copy.deepcopy(specs), _owned_projection(lab, names))


def perturbed(spec: dict[str, Any]) -> dict[str, Any]:
    """A different valid spec: other replicas, message and listener set."""
    changed = copy.deepcopy(spec)
    changed["replicas"] = 2 if spec.get("replicas") != 2 else 1
    changed["message"] = f"perturbed: {spec.get('message', '')}"[:1024]
    changed["listeners"] = [{"name": "perturbed", "port": 7070}]
    changed.pop("resources", None)
    return changed


def assert_reverting_restores(lab: Lab, earlier: Snapshot) -> None:
    """Revert each LabServer to its earlier spec (perturbing it first if it still has it): once
    converged, its children are again what they were. Compared on the fields we own."""
    current = {ls["metadata"]["name"]: ls["spec"] for ls in lab.labservers()}
    names = [name for name in earlier.specs if name in current]
    unchanged = [name for name in names if current[name] == earlier.specs[name]]
    for name in unchanged:
        lab.set_spec(name, perturbed(earlier.specs[name]))
    if unchanged:
        wait_converged(lab)
    for name in names:
        lab.set_spec(name, earlier.specs[name])
    wait_converged(lab)
    now = _owned_projection(lab, names)
    differing = {
        name: (earlier.children[name], now[name]) for name in names if now[name] != earlier.children[name]
    }
    assert not differing, "reverting did not restore the children:\n" + "\n".join(
        f"{name}:\n  before {before}\n  after  {after}" for name, (before, after) in differing.items()
    )


# --- the operator ---------------------------------------------------------------------------------


def assert_operator_healthy(operator: Operator) -> None:
    assert operator.alive(), f"the operator is not running\n{operator.describe()}"
    assert operator.ready(), f"the operator's /readyz is not 200\n{operator.describe()}"


def assert_log_clean(operator: Operator) -> None:
    """No ERROR/CRITICAL line and no traceback outside the declared fault windows."""
    problems = operator.book.problems()
    windows = "; ".join(f"{w.what} {w.start}..{w.end}" for w in operator.book.windows) or "none"
    assert not problems, (
        f"{len(problems)} ERROR/traceback line(s) outside the fault windows ({windows}):\n"
        + "\n".join(problems[:15])
        + f"\n{operator.describe()}"
    )


def assert_no_labserver_events(lab: Lab, reason: str) -> None:
    events = lab.labserver_events(reason)
    assert not events, f"{len(events)} {reason} Event(s), e.g. " + "; ".join(
        f"{e['involvedObject']['name']}: {e.get('message')}" for e in events[:5]
    )


# --- all of them ----------------------------------------------------------------------------------


def assert_steady_state(
    lab: Lab, operator: Operator, *, earlier: Snapshot | None = None, sample: int = 3
) -> None:
    """Every oracle, in order: converged, owned once and no orphans, consistent, reverting
    restores (``earlier``, or a fresh snapshot of a few LabServers perturbed and reverted now),
    operator healthy, log clean."""
    wait_converged(lab)
    wait_owned_once_no_orphans(lab)
    assert_children_match_specs(lab)
    if earlier is None:
        names = sorted(ls["metadata"]["name"] for ls in lab.labservers())[:sample]
        earlier = snapshot(lab, names)
    assert_reverting_restores(lab, earlier)
    assert_children_match_specs(lab)
    assert_operator_healthy(operator)
    assert_log_clean(operator)
