"""Seeded random sequences of valid LabServer spec mutations, for the chaos tier.

Role: ``Mutator(seed)`` turns one integer into a reproducible sequence of steps: each either
rewrites one LabServer's whole spec (replicas, message, listeners added, removed, renamed,
re-ported or reordered, resources set or dropped) or is a checkpoint where the test waits for
convergence and checks the oracles. Every spec it produces is one the CRD accepts (the same
bounds as ``labop.spec``), so a failure is the operator's, never the generator's.
Why: hand-written scenarios cover the paths we thought of; a seeded walk covers the ones we
did not, and the seed alone replays it (``replay_command``).
Pure: no I/O; the tests apply the specs.
"""

from __future__ import annotations

import copy
import random
import string
from dataclasses import dataclass
from typing import Any

from labop import api as limits

# Messages chosen to break naive encodings: non-ASCII in and beyond the Basic Multilingual Plane,
# Kubernetes' `$(VAR)` expansion and `$$` escape, quotes, backslashes, newlines, YAML look-alikes.
MESSAGE_FRAGMENTS = (
    "Hello, chaos",
    "héllo wörld",
    "日本語のメッセージ",
    "Ελληνικά",
    "rocket 🚀",
    "🎉🎉",
    "costs $5",
    "costs $$5",
    "$(HOME)",
    "$(LABHTTP_LISTEN)",
    "$$(escaped)",
    "tail $",
    'say "hi"',
    "it's",
    "back\\slash",
    "line one\nline two",
    "tab\there",
    "key: value",
    "- item",
    "{json: true}",
    "%s %d {}",
    "",
)
CPU = ("10m", "50m", "100m", "250m", "0.5", "1")
MEMORY_MI = (32, 64, 100, 128, 256)


@dataclass(frozen=True)
class Step:
    """One step: ``spec`` for LabServer ``name`` (what changed in ``what``), or a checkpoint."""

    what: str
    name: str = ""
    spec: dict[str, Any] | None = None

    @property
    def checkpoint(self) -> bool:
        return self.spec is None


def replay_command(seed: int, steps: int, test: str = "random") -> str:
    return f"CHAOS_SEED={seed} CHAOS_SEEDS=1 CHAOS_STEPS={steps} make test-chaos PYTEST_ARGS='-k {test}'"


def initial_spec(index: int) -> dict[str, Any]:
    """A complete, explicit starting spec (so that every later step is a whole-spec rewrite)."""
    return {
        "replicas": 1,
        "message": f"start {index}",
        "listeners": [{"name": "api", "port": 8080}, {"name": "metrics", "port": 9090}],
    }


class Mutator:
    def __init__(
        self, seed: int, names: list[str], *, checkpoint_every: float = 8.0, max_gap: int = 10
    ) -> None:
        self.rng = random.Random(seed)
        self.specs = {name: initial_spec(i) for i, name in enumerate(names)}
        self.checkpoint_chance = 1.0 / checkpoint_every
        self.max_gap = max_gap

    def steps(self, count: int) -> list[Step]:
        """``count`` steps; the last one is a checkpoint, and so is at least one in ``max_gap``
        (a forced checkpoint draws nothing from the generator: the changes stay the seed's)."""
        out: list[Step] = []
        since_checkpoint = 0
        while len(out) < count - 1:
            step = Step("checkpoint") if since_checkpoint >= self.max_gap else self._step()
            since_checkpoint = 0 if step.checkpoint else since_checkpoint + 1
            out.append(step)
        return [*out, Step("checkpoint")]

    # --- internals ------------------------------------------------------------------------

    def _step(self) -> Step:
        if self.rng.random() < self.checkpoint_chance:
            return Step("checkpoint")
        name = self.rng.choice(sorted(self.specs))
        spec = copy.deepcopy(self.specs[name])
        mutation = self.rng.choice(
            [
                self._replicas,
                self._message,
                self._message,
                self._add_listener,
                self._remove_listener,
                self._rename_listener,
                self._change_port,
                self._reorder_listeners,
                self._resources,
            ]
        )
        what = mutation(spec)
        self.specs[name] = spec
        return Step(what, name, copy.deepcopy(spec))

    def _replicas(self, spec: dict[str, Any]) -> str:
        spec["replicas"] = self.rng.randint(0, 3)
        return f"replicas={spec['replicas']}"

    def _message(self, spec: dict[str, Any]) -> str:
        if self.rng.random() < 0.1:
            # At the limit: 1024 characters, counted as the CRD counts them (code points).
            unit = self.rng.choice(["x", "é", "🚀", "$"])
            spec["message"] = unit * limits.MAX_MESSAGE_LENGTH
        else:
            parts = self.rng.sample(MESSAGE_FRAGMENTS, self.rng.randint(1, 3))
            spec["message"] = " ".join(parts)[: limits.MAX_MESSAGE_LENGTH]
        return f"message={spec['message'][:40]!r}{'...' if len(spec['message']) > 40 else ''}"

    def _add_listener(self, spec: dict[str, Any]) -> str:
        listeners = spec["listeners"]
        if len(listeners) >= limits.MAX_LISTENERS:
            return self._remove_listener(spec)
        added = {"name": self._new_name(listeners), "port": self._new_port(listeners)}
        listeners.insert(self.rng.randint(0, len(listeners)), added)
        return f"add listener {added['name']}:{added['port']}"

    def _remove_listener(self, spec: dict[str, Any]) -> str:
        listeners = spec["listeners"]
        if len(listeners) <= limits.MIN_LISTENERS:
            return self._add_listener(spec)
        removed = listeners.pop(self.rng.randrange(len(listeners)))
        return f"remove listener {removed['name']}"

    def _rename_listener(self, spec: dict[str, Any]) -> str:
        listener = self.rng.choice(spec["listeners"])
        old, listener["name"] = listener["name"], self._new_name(spec["listeners"])
        return f"rename listener {old}->{listener['name']}"

    def _change_port(self, spec: dict[str, Any]) -> str:
        listener = self.rng.choice(spec["listeners"])
        old, listener["port"] = listener["port"], self._new_port(spec["listeners"])
        return f"port of {listener['name']} {old}->{listener['port']}"

    def _reorder_listeners(self, spec: dict[str, Any]) -> str:
        self.rng.shuffle(spec["listeners"])
        return "reorder listeners " + ",".join(listener["name"] for listener in spec["listeners"])

    def _resources(self, spec: dict[str, Any]) -> str:
        if "resources" in spec and self.rng.random() < 0.3:
            del spec["resources"]
            return "resources back to the operator's defaults"
        request_mi = self.rng.choice(MEMORY_MI)
        limit_mi = self.rng.choice([m for m in MEMORY_MI if m >= request_mi])
        resources: dict[str, Any] = {"requests": {"cpu": self.rng.choice(CPU), "memory": f"{request_mi}Mi"}}
        if self.rng.random() < 0.7:
            resources["limits"] = {"memory": f"{limit_mi}Mi"}
        spec["resources"] = resources
        return f"resources={resources}"

    def _new_name(self, listeners: list[dict[str, Any]]) -> str:
        taken = {listener["name"] for listener in listeners}
        for _ in range(100):  # bounded: 26 * 36**k names, a clash is rare
            length = self.rng.randint(1, limits.MAX_LISTENER_NAME_LENGTH)
            first = self.rng.choice(string.ascii_lowercase)  # a letter: the name must contain one
            middle = "".join(
                self.rng.choice(string.ascii_lowercase + string.digits + "-") for _ in range(length)
            )
            name = (first + middle)[: limits.MAX_LISTENER_NAME_LENGTH].rstrip("-")
            while "--" in name:
                name = name.replace("--", "-")
            if name not in taken and _is_listener_name(name):
                return name
        raise AssertionError("no free listener name in 100 tries")

    def _new_port(self, listeners: list[dict[str, Any]]) -> int:
        taken = {listener["port"] for listener in listeners}
        for _ in range(100):
            port = self.rng.randint(limits.MIN_PORT, limits.MAX_PORT)
            if port not in taken:
                return port
        raise AssertionError("no free port in 100 tries")


def _is_listener_name(name: str) -> bool:
    """Whether the API (its schema and CEL rules, as the operator checks them) takes ``name``."""
    try:
        limits.Listener.model_validate({"name": name, "port": limits.MIN_PORT})
    except ValueError:  # pydantic's ValidationError
        return False
    return True
