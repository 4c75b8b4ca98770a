"""The datacenter HA settings (Proxmox datacenter.cfg 'ha' and 'crs'), versions 2 and 3.

``options`` = {"ha": {"shutdown_policy": ...}, "crs": {"ha": ..., ...}}, merged key by
key; ``delete`` lists "SECTION" or "SECTION.KEY"; the digest covers the whole settings.
`DC_OPTIONS` is the one authority for keys and values (the API validates with it).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from harepl.core.fencing import FENCING_MODES
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


def _check_in(table: dict[str, dict[str, Check]], section: str, key: str, value: Any) -> Any:
    """Validate one datacenter setting against one version's table; one line naming it."""
    if section not in table:
        raise CommandError(f"unknown datacenter section '{section}' (known: {', '.join(sorted(table))})")
    keys = table[section]
    if key not in keys:
        raise CommandError(f"unknown datacenter option '{section}.{key}' "
                           f"(known in {section}: {', '.join(sorted(keys))})")
    return keys[key](f"{section}.{key}", value)


def dc_option_check(section: str, key: str, value: Any) -> Any:
    """Validate one datacenter setting; CommandError with one line naming it."""
    return _check_in(DC_OPTIONS, section, key, value)


def _options_field(table: dict[str, dict[str, Check]]) -> Check:
    """The `options` field of one version: every section and key known to `table`."""
    def check(field: str, v: Any) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for section, values in obj(field, v).items():
            if section not in table:
                _check_in(table, section, "", None)
            out[section] = {key: _check_in(table, section, key, value)
                            for key, value in obj(f"{field}.{section}", values).items()}
        return out
    return check


def _delete_field(table: dict[str, dict[str, Check]]) -> Check:
    """The `delete` field of one version: names of sections or keys known to `table`."""
    def check(field: str, v: Any) -> list[str]:
        for item in name_list(field, v):
            section, _, key = item.partition(".")
            if section not in table or (key and key not in table[section]):
                raise CommandError(f"{field}: unknown datacenter option {item!r}")
        return sorted(set(v))
    return check


_dc_options, _dc_delete = _options_field(DC_OPTIONS), _delete_field(DC_OPTIONS)


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


# -- version 3: the rest of Proxmox's CRS settings (issue 9) -------------------------------------
# Version 2's table above stays what version-2 commands meant; a setting only version 3
# knows makes the command a version-3 one (`dc_options_set` below, `vocabulary.make`).

REBALANCE_METHODS_V3 = ("bruteforce", "topsis", "exhaustive")  # exhaustive: harepl's old name of bruteforce


def _ratio(lo: float, hi: float | None) -> Check:
    def check(field: str, v: Any) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not v >= lo or (hi is not None and v > hi):
            bound = f"from {lo:g} to {hi:g}" if hi is not None else f">= {lo:g}"
            raise CommandError(f"{field}: expected a number {bound} (got {v!r})")
        return float(v)
    return check


DC_OPTIONS_V3: dict[str, dict[str, Check]] = {section: dict(keys) for section, keys in DC_OPTIONS.items()}
DC_OPTIONS_V3["crs"].update({
    "ha": choice("basic", "static", "dynamic"),
    "ha-auto-rebalance-method": choice(*REBALANCE_METHODS_V3),
    "ha-auto-rebalance-threshold": _ratio(0.0, None),
    "ha-auto-rebalance-margin": _ratio(0.0, 1.0),
})
# Proxmox's `fencing` datacenter option (issue 10, harepl/core/fencing.py): watchdog | hardware | both
DC_OPTIONS_V3["ha"]["fencing"] = choice(*FENCING_MODES)


def dc_option_check_v3(section: str, key: str, value: Any) -> Any:
    """Validate one datacenter setting as the newest vocabulary knows it (the API's check)."""
    return _check_in(DC_OPTIONS_V3, section, key, value)


_dc_options_v3, _dc_delete_v3 = _options_field(DC_OPTIONS_V3), _delete_field(DC_OPTIONS_V3)


DC_OPTIONS_SET_V3 = Op("dc_options_set", _dc_options_set, since=3, fields={
    "options": required(_dc_options_v3), "delete": optional(_dc_delete_v3), "epoch": EPOCH, "digest": DIGEST})

OPS = (DC_OPTIONS_SET, DC_OPTIONS_SET_V3)


def dc_options_set(options: dict[str, dict[str, Any]], delete: list[str] | None = None,
                   digest: str | None = None, **kw: Any) -> dict[str, Any]:
    """At version 2 when version 2 knows every setting and deletion, else at version 3."""
    try:
        _dc_options("options", options)
        if delete is not None:
            _dc_delete("delete", delete)
    except CommandError:
        return DC_OPTIONS_SET_V3.make(options=options, delete=delete, digest=digest, **kw)
    return DC_OPTIONS_SET.make(options=options, delete=delete, digest=digest, **kw)
