"""The datacenter HA settings (Proxmox datacenter.cfg 'ha' and 'crs'), version 2.

``options`` = {"ha": {"shutdown_policy": ...}, "crs": {"ha": ..., ...}}, merged key by
key; ``delete`` lists "SECTION" or "SECTION.KEY"; the digest covers the whole settings.
`DC_OPTIONS` is the one authority for keys and values (the API validates with it).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from harepl.core.vocabulary import CRS_MODES, SHUTDOWN_POLICIES

from .. import reads
from ..envelope import Check, CommandError, Op, optional, required
from ..fields import boolean, choice, name_list, obj
from .common import DIGEST, EPOCH, Rejected, canon, check_digest, fence_optional

REBALANCE_METHODS = ("exhaustive", "topsis")


def _rounds(field: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 1000:
        raise CommandError(f"{field}: expected an integer from 1 to 1000 (got {v!r})")
    return v


#: datacenter HA settings: section -> key -> check
DC_OPTIONS: dict[str, dict[str, Check]] = {
    "ha": {"shutdown_policy": choice(*SHUTDOWN_POLICIES)},
    "crs": {"ha": choice(*CRS_MODES), "ha-rebalance-on-start": boolean, "ha-auto-rebalance": boolean,
            "ha-auto-rebalance-hold-duration": _rounds,
            "ha-auto-rebalance-method": choice(*REBALANCE_METHODS)},
}


def dc_option_check(section: str, key: str, value: Any) -> Any:
    """Validate one datacenter setting; CommandError with one line naming it."""
    if section not in DC_OPTIONS:
        raise CommandError(f"unknown datacenter section '{section}' (known: {', '.join(sorted(DC_OPTIONS))})")
    keys = DC_OPTIONS[section]
    if key not in keys:
        raise CommandError(f"unknown datacenter option '{section}.{key}' "
                           f"(known in {section}: {', '.join(sorted(keys))})")
    return keys[key](f"{section}.{key}", value)


def _dc_options(field: str, v: Any) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for section, values in obj(field, v).items():
        if section not in DC_OPTIONS:
            dc_option_check(section, "", None)
        out[section] = {key: dc_option_check(section, key, value)
                        for key, value in obj(f"{field}.{section}", values).items()}
    return out


def _dc_delete(field: str, v: Any) -> list[str]:
    for item in name_list(field, v):
        section, _, key = item.partition(".")
        if section not in DC_OPTIONS or (key and key not in DC_OPTIONS[section]):
            raise CommandError(f"{field}: unknown datacenter option {item!r}")
    return sorted(set(v))


def _dc_options_set(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    """dc_options_set: merge ``options``, then drop what ``delete`` names.  Result: the new
    ``datacenter`` settings."""
    fence_optional(conn, c)
    cur = reads.datacenter(conn)
    check_digest(c, cur)
    options, delete = c["options"], c.get("delete", [])
    if not any(options.values()) and not delete:
        raise Rejected("invalid", "nothing to change")
    for item in delete:
        section, _, key = item.partition(".")
        if (key or section) in options.get(section, {}) or (not key and options.get(section)):
            raise Rejected("invalid", f"cannot set and delete {item!r} at once")
    new = {section: dict(values) for section, values in cur.items()}
    for section, values in options.items():
        new.setdefault(section, {}).update(values)
    for item in delete:
        section, _, key = item.partition(".")
        if key:
            new.get(section, {}).pop(key, None)
        else:
            new.pop(section, None)
    new = {section: values for section, values in new.items() if values}
    conn.execute("INSERT OR REPLACE INTO settings (key, value) VALUES ('datacenter', ?)", (canon(new),))
    return {"datacenter": new}


DC_OPTIONS_SET = Op("dc_options_set", _dc_options_set, since=2, fields={
    "options": required(_dc_options), "delete": optional(_dc_delete), "epoch": EPOCH, "digest": DIGEST})

OPS = (DC_OPTIONS_SET,)


def dc_options_set(options: dict[str, dict[str, Any]], delete: list[str] | None = None,
                   digest: str | None = None, **kw: Any) -> dict[str, Any]:
    return DC_OPTIONS_SET.make(options=options, delete=delete, digest=digest, **kw)
