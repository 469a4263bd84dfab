"""The chaos suite's pure parts checked without a cluster: the random walk, the expansion rule,
the log windows and the field comparison.

Why: an oracle that is wrong makes a chaos failure (or pass) meaningless, and these parts are
cheap to check exactly here; the scenarios themselves run in tests/chaos (make test-chaos).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.chaos.lab import LogBook
from tests.chaos.mutations import Mutator, replay_command
from tests.chaos.oracles import _differences, expand, served_message

from labop.api import MAX_MESSAGE_LENGTH
from labop.spec import parse_spec


@pytest.mark.parametrize("seed", range(50))
def test_every_step_of_a_walk_is_a_spec_the_operator_accepts(seed: int) -> None:
    walk = Mutator(seed, ["a", "b"])
    for step in walk.steps(80):
        if step.spec is not None:
            parsed = parse_spec(step.spec, default_image="img")
            assert len(parsed.message) <= MAX_MESSAGE_LENGTH


def test_a_seed_replays_the_same_walk_and_says_how() -> None:
    assert Mutator(7, ["a", "b"]).steps(30) == Mutator(7, ["a", "b"]).steps(30)
    assert Mutator(7, ["a", "b"]).steps(30) != Mutator(8, ["a", "b"]).steps(30)
    assert Mutator(7, ["a"]).steps(5)[-1].checkpoint


@pytest.mark.parametrize("seed", range(20))
def test_a_walk_checks_the_oracles_at_least_every_ten_steps(seed: int) -> None:
    steps = Mutator(seed, ["a", "b"], checkpoint_every=1000).steps(100)
    gaps = "".join("c" if step.checkpoint else "." for step in steps).split("c")
    assert len(steps) == 100 and max(len(gap) for gap in gaps) <= 10
    assert replay_command(7, 30).startswith("CHAOS_SEED=7 CHAOS_SEEDS=1 CHAOS_STEPS=30 make test-chaos")


# Cases from Kubernetes' third_party/forked/golang/expansion/expand_test.go.
@pytest.mark.parametrize(
    ("value", "expanded"),
    [
        ("$(VAR_A)", "A"),
        ("___$(VAR_B)___", "___B___"),
        ("$(VAR_A)-$(VAR_B)", "A-B"),
        ("$$(VAR_A)", "$(VAR_A)"),
        ("$$$$$$(BIG_MONEY)", "$$$(BIG_MONEY)"),
        ("$(VAR_DNE)", "$(VAR_DNE)"),
        ("$(VAR_A", "$(VAR_A"),
        ("$VAR_A", "$VAR_A"),
        ("$$", "$"),
        ("$", "$"),
        ("costs $$5", "costs $5"),
        ("$()", "$()"),
        ("rocket 🚀", "rocket 🚀"),
    ],
)
def test_expansion_follows_kubernetes(value: str, expanded: str) -> None:
    assert expand(value, {"VAR_A": "A", "VAR_B": "B"}) == expanded


def test_the_served_message_is_the_env_value_after_expansion() -> None:
    deployment: dict[str, Any] = {
        "spec": {
            "template": {
                "metadata": {"annotations": {"m": "from $(annotation)"}},
                "spec": {"containers": [{"env": [{"name": "LABHTTP_MESSAGE", "value": "a $$ b"}]}]},
            }
        }
    }
    assert served_message(deployment) == "a $ b"
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [
        {"name": "LABHTTP_MESSAGE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['m']"}}}
    ]
    assert served_message(deployment) == "from $(annotation)"  # valueFrom is never expanded


def test_log_lines_inside_a_fault_window_are_forgiven(tmp_path: Path) -> None:
    log = tmp_path / "operator-1.log"
    book = LogBook(files=[log])
    log.write_text("[t] labop [INFO    ] fine\n")
    with book.fault("kill"), log.open("a") as out:
        out.write("[t] labop [ERROR   ] during\nTraceback (most recent call last):\n")
    with log.open("a") as out:
        out.write("[t] labop [ERROR   ] after\n")
    assert book.problems() == ["operator-1.log:4: [t] labop [ERROR   ] after"]


def test_owned_fields_compare_quantities_by_amount_and_ignore_server_defaults() -> None:
    want = {"spec": {"resources": {"requests": {"cpu": "0.5"}}, "env": [{"name": "X", "value": ""}]}}
    got = {"spec": {"resources": {"requests": {"cpu": "500m"}}, "env": [{"name": "X"}], "extra": 1}}
    found: list[str] = []
    _differences(want, got, "Deployment", found)
    assert found == []
    _differences({"spec": {"replicas": 2}}, {"spec": {"replicas": 1}}, "Deployment", found)
    assert found == ["Deployment.spec.replicas: want 2, got 1"]
