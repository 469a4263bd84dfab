"""The fields a server-side apply of one of our children owns, computed without the apiserver.

Role: ``applied_fields(desired)`` is the field set that applying ``desired`` leaves in our field
manager's managedFields entry (operation Apply, no subresource), and ``fields_of(fieldsV1)``
reads such an entry back; ``fingerprint`` makes either a short string to keep in the cache.
The reconciler skips an apply when the child's entry still has exactly the fingerprint of what
it would apply (see ``Reconciler._apply_if_changed`` for why that is enough).

Why a function of our own and not the apiserver's answer: after a restart the only record of our
last apply is the child itself; the set must come from ``desired`` alone. The rules are those
of structured-merge-diff for the fields the builders emit (the integration test
``test_owned_fields`` proves them against the real apiserver for several spec shapes):

* every scalar leaf we send is a member; ``apiVersion``, ``kind``, ``metadata.name`` and
  ``metadata.namespace`` are not (they identify the object, nobody owns them);
* an atomic value (a Deployment's ``spec.selector``, a Service's ``spec.selector``, a list of
  scalars such as ``capabilities.drop``, each ownerReference) is one leaf, no members below;
* an associative list's item is ``k:{"key":value,...}`` (keys sorted, compact JSON) and is a
  member itself (``"."`` in fieldsV1) beside its fields: containers and env by ``name``,
  container ports by ``containerPort`` + ``protocol``, Service ports by ``port`` + ``protocol``,
  ownerReferences by ``uid``.

A list or shape these rules do not know yields a set that matches nothing: the reconciler then
applies every time, which is correct, only not free.

Both fingerprints are remembered (``MEMO_SIZE`` of each), because they are asked for far more
often than their inputs change: a child's fingerprint on every watch event of every one of our
children (a Deployment's status changes a few times per rollout; our Apply entry does not), the
desired one on every reconcile. Walking, normalising, sorting and hashing some 80 paths each
time was about a tenth of the operator's CPU at 1,000 LabServers (bench/profiles/README.md).
A child's entry is remembered by a 16-byte digest of its fieldsV1 as compact JSON (one C-speed
``json.dumps``; equal text, equal set), the desired one by the object's desired-hash annotation
(equal hashes, equal objects, so equal sets). Why a digest and not the text: an Apply entry names
the owner's uid (ownerReferences is keyed by uid), so every child's text is its own, some 2 KB;
kept as keys, a full memo held ~10 MB (measured at 3,000 LabServers, BENCHMARKS.md). Both memos
drop the entry used least recently once full.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from labop.naming import DESIRED_HASH

Path = tuple[str, ...]
MEMO_SIZE = 4096

# Where a field path (field names only, list items skipped) is an associative list: its keys.
LIST_KEYS: dict[Path, tuple[str, ...]] = {
    ("metadata", "ownerReferences"): ("uid",),
    ("spec", "ports"): ("port", "protocol"),  # a Service's
    ("spec", "template", "spec", "containers"): ("name",),
    ("spec", "template", "spec", "containers", "env"): ("name",),
    ("spec", "template", "spec", "containers", "ports"): ("containerPort", "protocol"),
}
ATOMIC: frozenset[Path] = frozenset(
    {
        ("spec", "selector"),  # LabelSelector (structType=atomic) / a Service's map (mapType=atomic)
        ("metadata", "ownerReferences", "*"),  # OwnerReference: structType=atomic
    }
)
IDENTITY: frozenset[Path] = frozenset(
    {("apiVersion",), ("kind",), ("metadata", "name"), ("metadata", "namespace")}
)


def _key_element(item: Mapping[str, Any], keys: tuple[str, ...]) -> str:
    return "k:" + json.dumps({k: item.get(k) for k in keys}, sort_keys=True, separators=(",", ":"))


def _walk(value: Any, path: Path, schema: Path) -> Iterator[Path]:
    if schema in ATOMIC or not isinstance(value, dict | list) or not value:
        yield path
        return
    if isinstance(value, dict):
        for name, child in value.items():
            if child is None or (*schema, name) in IDENTITY:
                continue
            yield from _walk(child, (*path, f"f:{name}"), (*schema, name))
        return
    keys = LIST_KEYS.get(schema)
    if keys is None or not all(isinstance(item, dict) for item in value):
        yield path  # a list of scalars is atomic; an unknown list of objects too (see above)
        return
    for item in value:
        item_path = (*path, _key_element(item, keys))
        yield item_path
        if (*schema, "*") not in ATOMIC:
            yield from _walk(item, item_path, schema)


def applied_fields(desired: Mapping[str, Any]) -> frozenset[Path]:
    """The members of the field set that server-side applying ``desired`` gives its manager."""
    return frozenset(_walk(dict(desired), (), ()))


def _normalised(element: str) -> str:
    if element.startswith("k:"):  # the same key whatever the order or spacing the server wrote
        return "k:" + json.dumps(json.loads(element[2:]), sort_keys=True, separators=(",", ":"))
    return element


def _members(node: Mapping[str, Any], path: Path) -> Iterator[Path]:
    for element, child in node.items():
        if element == ".":
            yield path
        elif not child:
            yield (*path, _normalised(element))
        else:
            yield from _members(child, (*path, _normalised(element)))


def fields_of(fields_v1: Mapping[str, Any]) -> frozenset[Path]:
    """The members of a managedFields entry's ``fieldsV1`` (``{}`` marks a leaf, ``"."`` the node)."""
    return frozenset(_members(fields_v1, ()))


def fields_v1(fields: frozenset[Path]) -> dict[str, Any]:
    """``fields`` written as the apiserver writes ``fieldsV1`` (the inverse of ``fields_of``)."""
    root: dict[str, Any] = {}
    for path in sorted(fields):
        node = root
        for element in path:
            node = node.setdefault(element, {})
    for path in fields:  # a member with members below it is marked by "."
        node = root
        for element in path:
            node = node[element]
        if node:
            node["."] = {}
    return root


def fingerprint(fields: frozenset[Path]) -> str:
    """A short, order-free digest of a field set (128 bits: equal sets, equal strings)."""
    text = json.dumps(sorted(fields), separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Memo:
    """At most ``size`` fingerprints by key; the one used least recently goes first."""

    def __init__(self, size: int = MEMO_SIZE) -> None:
        self._size = size
        self._found: OrderedDict[bytes | str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._found)

    def get(self, key: bytes | str, make: Callable[[], str]) -> str:
        found = self._found.get(key)
        if found is not None:
            self._found.move_to_end(key)
            return found
        found = self._found[key] = make()
        if len(self._found) > self._size:
            self._found.popitem(last=False)
        return found


_CHILDREN = Memo()  # digest of an Apply entry's fieldsV1 text -> fingerprint
_DESIRED = Memo()  # desired hash -> fingerprint


def _child_fingerprint(fields: Any) -> str:
    text = json.dumps(fields, separators=(",", ":"))
    digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
    return _CHILDREN.get(digest, lambda: fingerprint(fields_of(json.loads(text))))


def apply_fingerprints(managed_fields: Any) -> dict[str, str]:
    """Per field manager, the fingerprint of its Apply entry on the object itself (no subresource)."""
    found: dict[str, str] = {}
    for entry in managed_fields or []:
        if entry.get("operation") == "Apply" and not entry.get("subresource") and entry.get("manager"):
            found[str(entry["manager"])] = _child_fingerprint(entry.get("fieldsV1") or {})
    return found


def applied_fingerprint(desired: Mapping[str, Any]) -> str:
    """``fingerprint(applied_fields(desired))``, remembered by ``desired``'s desired hash."""
    known = ((desired.get("metadata") or {}).get("annotations") or {}).get(DESIRED_HASH)
    if known is None:
        return fingerprint(applied_fields(desired))
    return _DESIRED.get(known, lambda: fingerprint(applied_fields(desired)))
