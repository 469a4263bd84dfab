"""Seeded random walks of valid spec changes, with the oracles at random checkpoints.

Why: the hand-written scenarios test what we thought of. A walk mixes replicas, messages (any
Unicode, `$`, quotes, newlines, 1024 characters), listeners added, removed, renamed, re-ported
and reordered, and resources, applied back to back so that reconciles overlap. The seed is
printed; a failure prints the steps that led to it and the command that replays them.
"""

from __future__ import annotations

import time

import pytest
from tests.chaos.conftest import ChaosSettings
from tests.chaos.lab import Lab, Operator, record
from tests.chaos.mutations import Mutator, replay_command
from tests.chaos.oracles import assert_children_match_specs, assert_steady_state, snapshot, wait_converged

pytestmark = [pytest.mark.cluster, pytest.mark.chaos]


def test_a_random_walk_of_valid_spec_changes_keeps_every_oracle(
    lab: Lab, operator: Operator, chaos: ChaosSettings, chaos_seed: int
) -> None:
    replay = replay_command(chaos_seed, chaos.steps)
    print(f"random walk: seed {chaos_seed}, {chaos.steps} steps; replay: {replay}")
    names = ["walk-a", "walk-b", "walk-c"]
    walk = Mutator(chaos_seed, names)
    done: list[str] = []
    waits: list[float] = []
    try:
        lab.create_many(names, lambda i: walk.specs[names[i]])
        wait_converged(lab)
        first = snapshot(lab, names)
        for index, step in enumerate(walk.steps(chaos.steps)):
            done.append(f"{index:3d} {step.name or '-':7s} {step.what}")
            if step.checkpoint:
                started = time.monotonic()
                wait_converged(lab)
                waits.append(time.monotonic() - started)
                assert_children_match_specs(lab)
            else:
                assert step.spec is not None
                lab.set_spec(step.name, step.spec)
        assert_steady_state(lab, operator, earlier=first)
    except Exception as err:
        err.add_note(f"seed {chaos_seed}; the last steps:\n" + "\n".join(done[-15:]) + f"\nreplay: {replay}")
        raise
    record(f"random walk seed {chaos_seed}: longest checkpoint wait for convergence", max(waits))
