"""The envelope of a store command: decode, validate, encode, `min_version`.

A command is one JSON object.  Every command has:

- ``v``     -- vocabulary version, 1 to `VERSION`;
- ``id``    -- unique string chosen by the proposer (uuid4 hex).  Applying the same id
              twice changes nothing and returns the first result, so callers retry
              with the same id after a timeout;
- ``op``    -- the operation (the ops are declared by domain in `harepl.store.ops`,
              registered in `harepl.store.vocabulary.REGISTRY`);
- ``ts``    -- proposer's wall-clock time (float seconds).  History only: `apply` never
              compares it with anything;
- ``epoch`` -- the fencing token, on every op that acts for a lease holder ("fenced" in
              the op's doc).  Applying a fenced command whose epoch is not the lease's
              current epoch, or whose lease is released, records a rejection.  Operator
              ops carry no epoch; if they do carry one, they are fenced on the
              `MANAGER_LEASE` (the CRM master may change the configuration, e.g. when it
              removes a service).

**Versions.**  Every op is declared with the version it appeared in (`Op.since`) and so
is each of its fields (`Field.since`).  A version-N command may use only what appeared
at N or before; every older command is still accepted and means what it meant, so an
old log replays to the same state.  A command is written at the lowest version that has
its op and fields (`min_version`), so a node still running an older harepl during a
rolling upgrade can apply everything but the new features.  A new op or field therefore
comes with a new `VERSION`.  An op whose meaning changes is declared again, with the new
`since`, its own fields and its own handler; commands of a lower version keep the older
declaration (`Registry.lookup`).

Every error text here may be recorded in the replicated history, identically on nodes of
different versions: it depends only on the command, never on this node's `VERSION`.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

VERSION = 3
SUPPORTED_VERSIONS = tuple(range(1, VERSION + 1))

MANAGER_LEASE = "manager"

#: the four fields of every command
COMMON = ("v", "id", "op", "ts")


def agent_lease(node: str) -> str:
    """Name of a node's LRM lease."""
    return f"agent:{node}"


class CommandError(ValueError):
    """A command that fails validation (becomes a recorded rejection at apply)."""


#: checks and normalises one field value: (field name, value) -> value, or CommandError
Check = Callable[[str, Any], Any]
#: applies one validated command: returns the op's result fields or raises `Rejected`
Handler = Callable[[sqlite3.Connection, dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True)
class Field:
    """One field of an op: its check, whether it is required, the version it appeared in."""

    check: Check
    required: bool = False
    since: int = 1


def required(check: Check) -> Field:
    """A field every command of the op carries (it appeared with the op)."""
    return Field(check, required=True)


def optional(check: Check, since: int = 1) -> Field:
    """A field a command may carry, from version `since` on."""
    return Field(check, required=False, since=since)


@dataclass(frozen=True)
class Op:
    """One operation: name, handler, the version it appeared in and its fields.

    ``quiet``: a success is a heartbeat, kept out of the bounded history (rejections are
    kept)."""

    name: str
    handler: Handler
    since: int
    fields: Mapping[str, Field] = field(default_factory=dict)
    quiet: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.since <= VERSION:
            raise ValueError(f"{self.name}: since {self.since} is not a version 1..{VERSION}")
        # a field declared before its op (e.g. a shared one) appeared with the op
        fields = {name: f if f.since >= self.since else Field(f.check, f.required, self.since)
                  for name, f in self.fields.items()}
        for name, f in fields.items():
            if name in COMMON or f.since > VERSION or (f.required and f.since != self.since):
                raise ValueError(f"{self.name}.{name}: bad field declaration {f}")
        object.__setattr__(self, "fields", fields)

    def spec(self, version: int) -> dict[str, Field]:
        """The fields a version-`version` command of this op may carry, in check order."""
        return {name: f for name, f in self.fields.items() if f.since <= version}

    def min_version(self, fields: Iterable[str] = ()) -> int | None:
        """The lowest version at which this op has all `fields` (None: one is unknown)."""
        version = self.since
        for name in fields:
            f = self.fields.get(name)
            if f is None:
                return None
            version = max(version, f.since)
        return version

    def make(self, ts: float | None = None, cid: str | None = None, **fields: Any) -> dict[str, Any]:
        """Build a command of this op with a fresh unique id, written at the lowest version
        that has its fields.  Fields given as None are left out.  `ts` defaults to the wall
        clock (history only)."""
        given = {k: v for k, v in fields.items() if v is not None}
        version = self.min_version(given)
        return command(self.name, VERSION if version is None else version, given, ts, cid)


def command(op: str, version: int, fields: Mapping[str, Any], ts: float | None = None,
            cid: str | None = None) -> dict[str, Any]:
    """A command as written: the envelope (a fresh unique id unless `cid`; `ts` defaults to
    the wall clock) and `fields`."""
    cmd: dict[str, Any] = {"v": version, "id": cid or uuid.uuid4().hex, "op": op,
                           "ts": time.time() if ts is None else ts}
    cmd.update(fields)
    return cmd


class Registry:
    """The ops of the vocabulary, by name and version.  Built explicitly from a list of
    declarations (`harepl.store.vocabulary.REGISTRY`); nothing registers itself."""

    def __init__(self, ops: Iterable[Op]) -> None:
        by_name: dict[str, list[Op]] = {}
        for op in ops:
            decls = by_name.setdefault(op.name, [])
            if any(d.since == op.since for d in decls):
                raise ValueError(f"{op.name} declared twice at version {op.since}")
            decls.append(op)
        self._by_name = {name: sorted(decls, key=lambda d: d.since) for name, decls in by_name.items()}

    def __iter__(self) -> Any:
        return (op for decls in self._by_name.values() for op in decls)

    def names(self) -> list[str]:
        return list(self._by_name)

    def lookup(self, name: Any, version: int) -> Op | None:
        """The declaration of op `name` that a version-`version` command means (None: the op
        does not exist at that version).  An unhashable `name` raises TypeError."""
        found = None
        for op in self._by_name.get(name, ()):
            if op.since <= version:
                found = op
        return found

    def first_since(self, name: Any) -> int | None:
        """The version op `name` appeared in (None: unknown)."""
        decls = self._by_name.get(name)
        return decls[0].since if decls else None


def decode(raw: str | bytes | dict[str, Any]) -> dict[str, Any]:
    """Parse a command from JSON text (or take a dict); raises CommandError."""
    if isinstance(raw, dict):
        return raw
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise CommandError(f"not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise CommandError("a command must be a JSON object")
    return obj


def validate(cmd: dict[str, Any], registry: Registry) -> dict[str, Any]:
    """Check a decoded command; return the normalised command or raise CommandError.

    (An unhashable ``op`` raises TypeError, which `apply` records as "internal": so it
    always has, and a replica of another version must record the same.)"""
    version = cmd.get("v")
    if isinstance(version, bool) or version not in SUPPORTED_VERSIONS:
        raise CommandError(f"v: unsupported command version {version!r} "
                           f"(expected one of {', '.join(map(str, SUPPORTED_VERSIONS))})")
    assert isinstance(version, (int, float))
    cid = cmd.get("id")
    if not isinstance(cid, str) or not cid or len(cid) > 128:
        raise CommandError("id: expected a non-empty string of at most 128 characters")
    op_name = cmd.get("op")
    op = registry.lookup(op_name, int(version))
    if op is None:
        first = registry.first_since(op_name)
        since = "" if first is None else f" in command version {version} (needs v {first})"
        raise CommandError(f"op: unknown operation {op_name!r}{since}")
    ts = cmd.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, (int, float)):
        raise CommandError("ts: expected a number (proposer's wall-clock seconds)")
    spec = op.spec(int(version))
    unknown = sorted(set(cmd) - set(COMMON) - set(spec))
    if unknown:
        raise CommandError(f"{op_name}: unknown field(s) {', '.join(unknown)}")
    out = {k: cmd[k] for k in COMMON}
    for name, f in spec.items():
        if name not in cmd:
            if f.required:
                raise CommandError(f"{op_name}: missing field {name!r}")
            continue
        out[name] = f.check(name, cmd[name])
    return out


def encode(cmd: dict[str, Any]) -> str:
    """Canonical JSON text of a command (what goes into the Raft log)."""
    return json.dumps(cmd, sort_keys=True, separators=(",", ":"))


def min_version(registry: Registry, op: str, fields: Iterable[str] = ()) -> int:
    """The lowest command version whose vocabulary has `op` with all `fields`.

    Commands are written at this version, not the newest, so that a node still running
    an older harepl during a rolling upgrade can apply everything but the new features
    (which `Client.submit` refuses until every running node supports them)."""
    names = set(fields)
    for version in SUPPORTED_VERSIONS:
        decl = registry.lookup(op, version)
        if decl is not None and names <= set(decl.spec(version)):
            return version
    return VERSION  # unknown op or field: validate() names the problem
