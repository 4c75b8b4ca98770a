"""Datacenter HA settings over the API: Proxmox's /cluster/options `ha` and `crs`.

Accepted like `pvesh set /cluster/options --ha shutdown_policy=migrate --crs ha=static`:
each section as a property string ("ha=static,ha-rebalance-on-start=1") or as an object
({"ha": "static", "ha-rebalance-on-start": true}). Settings are merged key by key by the
store; `delete` names "SECTION" or "SECTION.KEY". The store's vocabulary
(`harepl.store.ops.datacenter.DC_OPTIONS`) is the one authority for keys and values.
"""

from __future__ import annotations

import re
from typing import Any

from harepl.runtime.api.backend import ClusterState
from harepl.runtime.api.errors import bad_request
from harepl.runtime.api.validate import _require_object, parse_bool, parse_digest, parse_int
from harepl.store import vocabulary as C
from harepl.store.ops import datacenter as V2
from harepl.store.reads import digest

DC_SECTIONS = tuple(sorted(V2.DC_OPTIONS_V3))
_BOOL_KEYS = {("crs", "ha-rebalance-on-start"), ("crs", "ha-auto-rebalance")}
_INT_KEYS = {("crs", "ha-auto-rebalance-hold-duration")}
_FLOAT_KEYS = {("crs", "ha-auto-rebalance-threshold"), ("crs", "ha-auto-rebalance-margin")}


def options_view(state: ClusterState) -> dict[str, Any]:
    """GET /cluster/options: the settings, and the digest to send back with an edit."""
    return {**state.datacenter, "digest": digest(state.datacenter)}


def _value(section: str, key: str, raw: Any) -> Any:
    what = f"{section}.{key}"
    if (section, key) in _BOOL_KEYS:
        return parse_bool(raw, what)
    if (section, key) in _INT_KEYS:
        return parse_int(raw, what, 1, 1000)
    if (section, key) in _FLOAT_KEYS and isinstance(raw, str):
        try:
            return float(raw)
        except ValueError:
            raise bad_request(f"{what} must be a number, got {raw!r}") from None
    return raw


def parse_section(section: str, raw: Any) -> dict[str, Any]:
    """'k=v,k2=v2' or {k: v} -> validated {k: v} (one clear line on the first problem)."""
    if isinstance(raw, str):
        items: dict[str, Any] = {}
        for part in (p for p in re.split(r"[,\s]+", raw.strip()) if p):
            key, sep, value = part.partition("=")
            if not sep or not key:
                raise bad_request(f"{section}: expected KEY=VALUE items separated by commas, got '{part}'")
            if key in items:
                raise bad_request(f"{section}: '{key}' given twice")
            items[key] = value
        raw = items
    if not isinstance(raw, dict):
        raise bad_request(f"{section} must be a property string like 'KEY=VALUE,...' or an object")
    if not raw:
        raise bad_request(f"{section}: no settings given")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            out[key] = V2.dc_option_check_v3(section, key, _value(section, key, value))
        except C.CommandError as exc:
            raise bad_request(str(exc)) from None
    return out


def options_set(body: Any, state: ClusterState) -> dict[str, Any]:
    """PUT /cluster/options -> the store command dc_options_set."""
    body = _require_object(body, (*DC_SECTIONS, "delete", "digest"), "datacenter options")
    seen = parse_digest(body, state.datacenter)
    options = {section: parse_section(section, body[section]) for section in DC_SECTIONS if section in body}
    delete = body.get("delete") or []
    if isinstance(delete, str):
        delete = [part for part in re.split(r"[,;\s]+", delete) if part]
    if not isinstance(delete, list) or not all(isinstance(item, str) for item in delete):
        raise bad_request("delete must be a list like ['crs.ha-rebalance-on-start', 'ha']")
    for item in delete:
        section, _, key = item.partition(".")
        if section not in V2.DC_OPTIONS_V3 or (key and key not in V2.DC_OPTIONS_V3[section]):
            raise bad_request(f"cannot delete unknown datacenter option '{item}'")
        if (key and key in options.get(section, {})) or (not key and section in options):
            raise bad_request(f"cannot set and delete '{item}' at once")
    if not options and not delete:
        raise bad_request("nothing to change (give ha, crs or delete)")
    command: dict[str, Any] = {"op": "dc_options_set", "options": options}
    if delete:
        command["delete"] = sorted(set(delete))
    if seen:
        command["digest"] = seen
    return command
