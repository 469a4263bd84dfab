"""Any message the CRD accepts travels intact: the apply body's encoding and the env escape.

Properties over the CRD's whole message space (any Unicode but NUL and lone surrogates, up to
1024 characters), with the nasty fragments mixed in on purpose. The same properties run
against the real apiserver in ``tests/integration/test_reliability.py``.
"""

from __future__ import annotations

import json

import yaml
from hypothesis import given
from hypothesis import strategies as st
from tests.support.expansion import expand

from labop.builders import env_literal
from labop.kubeapi import apply_body

NASTY = [
    "$",
    "$$",
    "$(HOME)",
    "$(",
    ")",
    "$$(HOME)",
    "\\",
    '"',
    "'",
    "\n",
    "\r\n",
    "\t",
    "😀",
    "\x85",
    "\u2028",
    "\u2029",
    "\ufeff",
    "\x7f",
    "\x9f",
    "é",
    ": ",
    "- ",
    "#",
    "{}",
    "[]",
    "&a",
    "*a",
    "!tag",
    "%",
    "@",
    "`",
]
MESSAGES = (
    st.lists(
        st.one_of(
            st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00")),
            st.sampled_from(NASTY),
        )
    )
    .map("".join)
    .filter(lambda text: len(text) <= 1024)
)
DEFINED = {"HOME": "/home/labhttp", "KUBERNETES_SERVICE_HOST": "10.96.0.1"}


@given(MESSAGES)
def test_the_env_escape_survives_kubernetes_expansion_for_every_message(message: str) -> None:
    assert expand(env_literal(message), DEFINED) == message.encode()


@given(MESSAGES)
def test_the_apply_body_reads_back_the_same_as_yaml_and_as_json(message: str) -> None:
    obj = {"spec": {"env": [{"name": "LABHTTP_MESSAGE", "value": message}]}}
    body = apply_body(obj)
    assert json.loads(body) == obj
    assert yaml.safe_load(body.decode()) == obj  # the apiserver reads an apply body as YAML


def test_the_unescaped_message_would_be_changed_by_expansion() -> None:
    # Why the escape exists: what the pods served before it.
    assert expand("costs $$5", DEFINED) == b"costs $5"
    assert expand("$(HOME)", DEFINED) == b"/home/labhttp"
    assert expand("$é", DEFINED) != "$é".encode()


def test_an_emoji_is_sent_as_utf8_not_as_a_surrogate_pair_yaml_refuses() -> None:
    body = apply_body({"message": "hi 😀"})
    assert "😀".encode() in body and b"\\ud83d" not in body
