"""What a container receives for an env value: Kubernetes' ``$(VAR)`` expansion, in Python.

The kubelet expands every env value against the variables defined before it (and the service
variables): ``$(NAME)`` becomes NAME's value when NAME is defined and stays as written when not,
``$$`` becomes ``$``, and an unclosed ``$(`` stays. It works on bytes: a ``$`` followed by any
other byte keeps both, but writes that byte as the character with its code (so ``$`` before a
multi-byte UTF-8 character mangles it). Written from the documented rule and that behaviour, so
that tests can compute what labhttp will read without running a container.
"""

from __future__ import annotations

from collections.abc import Mapping

DOLLAR, OPEN, CLOSE = ord("$"), ord("("), ord(")")


def expand(value: str, defined: Mapping[str, str]) -> bytes:
    """The bytes a container sees for the env value ``value`` given the ``defined`` variables."""
    data, out, i = value.encode(), bytearray(), 0
    while i < len(data):
        if data[i] != DOLLAR or i + 1 == len(data):
            out.append(data[i])
            i += 1
            continue
        following = data[i + 1]
        if following == DOLLAR:
            out += b"$"
            i += 2
        elif following == OPEN and (close := data.find(b")", i + 2)) != -1:
            name = data[i + 2 : close].decode(errors="surrogateescape")
            out += defined[name].encode() if name in defined else data[i : close + 1]
            i = close + 1
        else:  # "$(" without a closer, or "$" before anything else: both kept, that byte as a code point
            out += b"$" + chr(following).encode()
            i += 2
    return bytes(out)
