"""Checks of command fields shared by the domains (`harepl.store.ops`).

Each is an `envelope.Check`: (field name, value) -> normalised value, or `CommandError`
with one line.  Their texts are recorded in the replicated history: changing one makes
replicas of different versions record different rejections, so a stricter rule goes
behind a new `since`, never into an existing check.
"""

from __future__ import annotations

import re
from typing import Any

from harepl.core.vocabulary import COMMITTED_NAME_RE

from .envelope import Check, CommandError

#: the names a command may carry: frozen with the log (new input is held to the stricter
#: rules of harepl.core.vocabulary where it enters: API, CLI)
NAME_RE = COMMITTED_NAME_RE


def name(field: str, v: Any) -> str:
    if not isinstance(v, str) or not NAME_RE.match(v):
        raise CommandError(f"{field}: expected a name of letters, digits and _.:@- (got {v!r})")
    return v


def string(field: str, v: Any) -> str:
    if not isinstance(v, str):
        raise CommandError(f"{field}: expected a string (got {type(v).__name__})")
    return v


def count(field: str, v: Any) -> int:
    """A non-negative integer (epochs, sequence numbers, limits)."""
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise CommandError(f"{field}: expected a non-negative integer (got {v!r})")
    return v


def positive(field: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise CommandError(f"{field}: expected a positive integer (got {v!r})")
    return v


def boolean(field: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if v in (0, 1):
        return bool(v)
    raise CommandError(f"{field}: expected a boolean (got {v!r})")


def obj(field: str, v: Any) -> dict[str, Any]:
    """A JSON object with string keys."""
    if not isinstance(v, dict) or not all(isinstance(k, str) for k in v):
        raise CommandError(f"{field}: expected a JSON object")
    return v


def node_prios(field: str, v: Any) -> dict[str, int]:
    """{node: integer priority}."""
    d = obj(field, v)
    for node, prio in d.items():
        name(f"{field} node", node)
        if isinstance(prio, bool) or not isinstance(prio, int):
            raise CommandError(f"{field}: priority of {node!r} must be an integer")
    return d


def name_list(field: str, v: Any) -> list[str]:
    if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
        raise CommandError(f"{field}: expected a list of strings")
    return v


def digest(field: str, v: Any) -> str:
    """The SHA1 of an object as read (`harepl.store.reads.digest`)."""
    if not isinstance(v, str) or not re.fullmatch(r"[0-9a-f]{40}", v):
        raise CommandError(f"{field}: expected a SHA1 digest of 40 hex digits (got {v!r})")
    return v


def choice(*allowed: str) -> Check:
    def check(field: str, v: Any) -> str:
        if v not in allowed:
            raise CommandError(f"{field}: expected one of {', '.join(allowed)} (got {v!r})")
        return str(v)
    return check


def deletable(allowed: tuple[str, ...], prefix: str | None = None) -> Check:
    """A ``delete`` list naming only `allowed` keys (or `prefix` + KEY); sorted, unique."""
    def check(field: str, v: Any) -> list[str]:
        for key in name_list(field, v):
            if key in allowed:
                continue
            if prefix and key.startswith(prefix) and len(key) > len(prefix):
                continue
            raise CommandError(f"{field}: cannot delete {key!r} (deletable: {', '.join(allowed)}"
                               f"{', ' + prefix + 'KEY' if prefix else ''})")
        return sorted(set(v))
    return check
