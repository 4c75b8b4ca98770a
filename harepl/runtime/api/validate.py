"""Pure validation of API request bodies into the store's shapes (`harepl.core.types`)
and write commands (`harepl.store.vocabulary`).

Every function takes plain JSON values (and the current ClusterState where references
must be checked) and returns a normalised value or raises ApiError with one clear line.
Nothing here does I/O, so a bad request is refused before anything is submitted.

The values, defaults and name rules are harepl.core.vocabulary's. This is where new input
enters, so it is where a rule is held tighter than the store's (which must accept what it
committed before): a new node name follows Proxmox's (no '_' or '.'), while a node the
cluster already has is accepted by its name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from harepl.core.placement import parse_service_size
from harepl.core.vocabulary import (
    AFFINITIES,
    CONFIG_ID_RE,
    DEFAULT_REQUESTED_STATE,
    GROUP_DELETABLE,
    NODE_NAME_RE,
    NODE_NAME_RULE,
    REQUESTED_STATE_ALIASES,
    REQUESTED_STATES,
    RESOURCE_DELETABLE,
    RULE_DELETABLE,
    RULE_TYPES,
    SERVICE_DEFAULTS,
    SERVICE_TYPES,
    SID_NAME_RE,
    VMID_RE,
    RuleType,
    ServiceState,
    requested_state,
)
from harepl.runtime.api import rule_check
from harepl.runtime.api.backend import ClusterState
from harepl.runtime.api.errors import ApiError, bad_request, conflict, not_found
from harepl.store.reads import digest
from harepl.store.vocabulary import DIGEST_MISMATCH

# the vocabulary's names, as this module has always exported them (routes use them)
REQUEST_STATES = REQUESTED_STATES
STATE_ALIASES = REQUESTED_STATE_ALIASES
__all__ = ["AFFINITIES", "REQUEST_STATES", "RULE_TYPES", "SERVICE_TYPES", "STATE_ALIASES", "ApiError"]

_PARAM_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
MAX_COMMENT = 4096
MAX_PARAM_VALUE = 4096

# resource keys a client may send (sid/type come from the path/sid)
RESOURCE_KEYS = ("state", "node", "group", "max_restart", "max_relocate", "failback", "comment", "params")
# RESOURCE_DELETABLE: the vocabulary's, the same list the store's resource_update takes;
# deleting one of these means "back to the default"
RESOURCE_DEFAULTS: dict[str, Any] = {k: v for k, v in SERVICE_DEFAULTS.items() if k != "state"}
GROUP_KEYS = ("nodes", "restricted", "nofailback", "comment")
RULE_KEYS = ("type", "resources", "nodes", "strict", "affinity", "disable", "comment")


# ---------------------------------------------------------------- scalars

def parse_sid(raw: Any) -> str:
    """'vm:100', 'exec:web', or a bare VMID ('100' means vm:100, as in Proxmox)."""
    if not isinstance(raw, str) or not raw:
        raise bad_request("sid must be a string like 'exec:web' or 'vm:100'")
    if VMID_RE.match(raw):
        return f"vm:{raw}"
    kind, sep, name = raw.partition(":")
    if not sep:
        raise bad_request(f"invalid sid '{raw}': expected TYPE:NAME, e.g. 'exec:web'")
    if kind not in SERVICE_TYPES:
        raise bad_request(f"invalid sid '{raw}': unknown service type '{kind}' "
                          f"(one of {', '.join(SERVICE_TYPES)})")
    if kind in ("vm", "ct") and not VMID_RE.match(name):
        raise bad_request(f"invalid sid '{raw}': {kind} needs a numeric id, e.g. '{kind}:100'")
    if not SID_NAME_RE.match(name):
        raise bad_request(f"invalid sid '{raw}': name may use letters, digits and _ . @ -")
    return f"{kind}:{name}"


def parse_bool(raw: Any, what: str) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, int) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str) and raw.lower() in ("0", "1", "true", "false", "yes", "no", "on", "off"):
        return raw.lower() in ("1", "true", "yes", "on")
    raise bad_request(f"{what} must be a boolean (0 or 1), got {raw!r}")


def parse_int(raw: Any, what: str, minimum: int = 0, maximum: int = 1_000_000) -> int:
    if isinstance(raw, bool):
        raise bad_request(f"{what} must be an integer, got {raw!r}")
    if isinstance(raw, str) and re.fullmatch(r"-?[0-9]+", raw.strip()):
        raw = int(raw.strip())
    if not isinstance(raw, int):
        raise bad_request(f"{what} must be an integer, got {raw!r}")
    if not minimum <= raw <= maximum:
        raise bad_request(f"{what} must be between {minimum} and {maximum}, got {raw}")
    return raw


def parse_state(raw: Any) -> str:
    state = requested_state(raw)
    if state is None:
        raise bad_request(f"state must be one of started (enabled), stopped, disabled, ignored; got {raw!r}")
    return state


def parse_comment(raw: Any) -> str:
    if not isinstance(raw, str):
        raise bad_request("comment must be a string")
    if len(raw) > MAX_COMMENT or "\n" in raw or "\0" in raw:
        raise bad_request(f"comment must be one line of at most {MAX_COMMENT} characters")
    return raw


def parse_node_name(raw: Any, state: ClusterState | None, what: str = "node") -> str:
    """A node of the cluster (by its name, whatever rule it was named under), or a new
    name that follows the node-name rule (Proxmox's: letters, digits, '-')."""
    known = state is not None and isinstance(raw, str) and raw in state.nodes
    if not isinstance(raw, str) or not (known or NODE_NAME_RE.match(raw)):
        raise bad_request(f"invalid {what} name {raw!r}: {NODE_NAME_RULE}")
    if state is not None and state.nodes and raw not in state.nodes:
        raise bad_request(f"no such cluster node '{raw}'")
    return raw


def parse_id(raw: Any, what: str) -> str:
    if not isinstance(raw, str) or not CONFIG_ID_RE.match(raw):
        raise bad_request(f"invalid {what} {raw!r}: start with a letter, then letters, digits, _ . -")
    return raw


def parse_digest(body: dict[str, Any], current: Any) -> str | None:
    """The optional `digest` of an edit: refused at once when it is already stale (the
    store checks it again, atomically, when it applies the edit)."""
    if "digest" not in body:
        return None
    raw = body["digest"]
    if not isinstance(raw, str) or not re.fullmatch(r"[0-9a-f]{40}", raw):
        raise bad_request("digest must be the 40 hex digits returned with the object")
    if digest(current) != raw:
        raise conflict(DIGEST_MISMATCH)
    return raw


def parse_params(raw: Any) -> dict[str, str]:
    """Agent parameters: a flat map of names to strings (ints/bools are stringified)."""
    if isinstance(raw, list):       # ["k=v", ...] as the CLI's --param gives them
        pairs: dict[str, Any] = {}
        for item in raw:
            if not isinstance(item, str) or "=" not in item:
                raise bad_request(f"param must be KEY=VALUE, got {item!r}")
            key, _, value = item.partition("=")
            pairs[key] = value
        raw = pairs
    if not isinstance(raw, dict):
        raise bad_request("params must be an object of NAME: VALUE")
    out: dict[str, str] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or not _PARAM_KEY_RE.match(key):
            raise bad_request(f"invalid parameter name {key!r}")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise bad_request(f"parameter '{key}' must be a string")
        text = str(value)
        if len(text) > MAX_PARAM_VALUE or "\0" in text:
            raise bad_request(f"parameter '{key}' is too long or contains NUL")
        out[key] = text
    return out


def parse_node_priorities(raw: Any, state: ClusterState | None) -> dict[str, int]:
    """'node1:2,node2' (Proxmox's syntax), a list of such items, or {node: priority}."""
    items: dict[str, Any] = {}
    if isinstance(raw, str):
        raw = [part for part in re.split(r"[,;\s]+", raw.strip()) if part]
    if isinstance(raw, list):
        for part in raw:
            if not isinstance(part, str):
                raise bad_request(f"invalid node entry {part!r}")
            name, sep, prio = part.partition(":")
            items[name] = prio if sep else 0
    elif isinstance(raw, dict):
        items = dict(raw)
    else:
        raise bad_request("nodes must be like 'node1:2,node2' or an object {node: priority}")
    if not items:
        raise bad_request("nodes must name at least one node")
    return {parse_node_name(name, state): parse_int(prio, f"priority of node '{name}'")
            for name, prio in items.items()}


def _require_object(body: Any, allowed: tuple[str, ...], what: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise bad_request(f"{what} must be a JSON object")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise bad_request(f"unknown {what} property '{unknown[0]}' (allowed: {', '.join(allowed)})")
    return body


def _parse_delete(raw: Any, allowed: tuple[str, ...], extra_prefix: str | None = None) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, str):
        raw = [part for part in re.split(r"[,;\s]+", raw) if part]
    if not isinstance(raw, list) or not all(isinstance(k, str) for k in raw):
        raise bad_request("delete must be a list of property names")
    for key in raw:
        if key in allowed:
            continue
        if extra_prefix and key.startswith(extra_prefix) and _PARAM_KEY_RE.match(key[len(extra_prefix):]):
            continue
        raise bad_request(f"cannot delete '{key}' (deletable: {', '.join(allowed)})")
    return sorted(set(raw))


# ---------------------------------------------------------------- resources

def check_agent_params(sid: str, config: dict[str, Any]) -> None:
    """Refuse a config no agent could run, with the agent factory's own one-line reason.

    Builds the agent as a node would (parsing only; for OCF it also looks up the agent
    script under OCF_ROOT) and throws it away.
    """
    from harepl.runtime.agents.base import AgentConfigError
    from harepl.runtime.agents.factory import AgentContext, agent_for

    try:
        agent_for(sid, config, AgentContext(node=str(config.get("node", "")), run_dir=Path("/nonexistent")))
    except AgentConfigError as exc:
        raise bad_request(str(exc)) from None


def _resource_fields(body: dict[str, Any], state: ClusterState) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "state" in body:
        out["state"] = parse_state(body["state"])
    if "node" in body:
        out["node"] = parse_node_name(body["node"], state)
    if "group" in body:
        group = parse_id(body["group"], "group name")
        if group not in state.groups:
            raise bad_request(f"HA group '{group}' does not exist")
        out["group"] = group
    for key in ("max_restart", "max_relocate"):
        if key in body:
            out[key] = parse_int(body[key], key, 0, 1000)
    if "failback" in body:
        out["failback"] = parse_bool(body["failback"], "failback")
    if "comment" in body:
        out["comment"] = parse_comment(body["comment"])
    if "params" in body:
        out["params"] = parse_params(body["params"])
        for key in ("maxcpu", "maxmem"):  # what the 'static' scheduler weighs the service by
            if key in out["params"]:
                try:
                    parse_service_size(key, out["params"][key])
                except ValueError as exc:
                    raise bad_request(str(exc)) from None
    return out


def resource_add(body: Any, state: ClusterState) -> dict[str, Any]:
    body = _require_object(body, ("sid", "type", *RESOURCE_KEYS), "resource")
    sid = parse_sid(body.get("sid"))
    kind = sid.split(":", 1)[0]
    if "type" in body and body["type"] != kind:
        raise bad_request(f"type '{body['type']}' does not match sid '{sid}'")
    if sid in state.resources:
        raise conflict(f"resource ID '{sid}' already defined")
    config: dict[str, Any] = {"type": kind, "state": DEFAULT_REQUESTED_STATE, "node": state.node,
                              **RESOURCE_DEFAULTS}
    config.update(_resource_fields(body, state))
    config.setdefault("params", {})
    check_agent_params(sid, config)
    if state.nodes and config["node"] not in state.nodes:
        raise bad_request(f"no such cluster node '{config['node']}'")
    return {"op": "resource_add", "sid": sid, "config": config}


def existing_sid(raw: Any, state: ClusterState) -> str:
    sid = parse_sid(raw)
    if sid not in state.resources:
        raise not_found(f"no such resource '{sid}'")
    return sid


def _check_not_error(sid: str, state: ClusterState, requested: str | None = None) -> None:
    """Proxmox: a service in `error` must be disabled (and fixed) before anything else."""
    status = state.manager_status.get("service_status", {}).get(sid, {})
    if status.get("state") == ServiceState.ERROR and requested != "disabled":
        raise conflict(f"service '{sid}' in error state, must be disabled and fixed first")


def resource_set(raw_sid: Any, body: Any, state: ClusterState) -> dict[str, Any]:
    """A field-level edit (store op resource_update): only the given fields (and the given
    agent parameters) change, merged by the store at apply time."""
    sid = existing_sid(raw_sid, state)
    body = _require_object(body, ("type", "delete", "digest", *RESOURCE_KEYS), "resource")
    kind = sid.split(":", 1)[0]
    if "type" in body and body["type"] != kind:
        raise bad_request(f"type '{body['type']}' does not match sid '{sid}'")
    current = state.resources[sid]
    seen = parse_digest(body, current)
    changes = _resource_fields({k: v for k, v in body.items() if k not in ("type", "delete", "digest")}, state)
    delete = _parse_delete(body.get("delete"), RESOURCE_DELETABLE, extra_prefix="params.")
    both = sorted(set(changes) & set(delete))
    both += [k for k in delete if k.startswith("params.") and k[len("params."):] in changes.get("params", {})]
    if both:
        raise bad_request(f"cannot set and delete '{both[0]}' at once")
    if not changes and not delete:
        raise bad_request("nothing to change")
    _check_not_error(sid, state, changes.get("state"))
    # what the merged config would be now: refused early if no agent could run it
    params = {**(current.get("params") or {}), **changes.get("params", {})}
    merged = {**current, **changes}
    for key in delete:
        if key == "params":
            params = {}
        elif key.startswith("params."):
            params.pop(key[len("params."):], None)
        elif key in RESOURCE_DEFAULTS:
            merged[key] = RESOURCE_DEFAULTS[key]
    check_agent_params(sid, {**merged, "params": params})
    command: dict[str, Any] = {"op": "resource_update", "sid": sid, "changes": changes}
    if delete:
        command["delete"] = delete
    if seen:
        command["digest"] = seen
    return command


def resource_remove(raw_sid: Any, state: ClusterState, purge: Any = None) -> dict[str, Any]:
    """purge (default 1, as Proxmox): also take the resource out of every rule naming it
    and delete the rules it leaves empty, in the same command (store op resource_purge)."""
    sid = existing_sid(raw_sid, state)
    if purge is None or parse_bool(purge, "purge"):
        return {"op": "resource_purge", "sid": sid}
    return {"op": "resource_remove", "sid": sid}


def crm_move(verb: str, raw_sid: Any, body: Any, state: ClusterState) -> dict[str, Any]:
    sid = existing_sid(raw_sid, state)
    body = _require_object(body, ("node",), verb)
    if "node" not in body:
        raise bad_request(f"{verb} needs a target node")
    node = parse_node_name(body["node"], state)
    rule_check.assert_ha_managed(state, sid)
    _check_not_error(sid, state)
    return {"op": "crm_command_enqueue", "cmd": f"{verb} {sid} {node}"}


def crm_stop(raw_sid: Any, body: Any, state: ClusterState) -> dict[str, Any]:
    sid = existing_sid(raw_sid, state)
    body = _require_object(body, ("timeout",), "stop")
    if "timeout" not in body:
        raise bad_request("stop needs a timeout in seconds (0 means hard stop)")
    timeout_s = parse_int(body["timeout"], "timeout", 0, 86400)
    rule_check.assert_ha_managed(state, sid)
    _check_not_error(sid, state)
    return {"op": "crm_command_enqueue", "cmd": f"stop {sid} {timeout_s}"}


def node_maintenance(raw_node: Any, body: Any, state: ClusterState) -> dict[str, Any]:
    node = parse_node_name(raw_node, state)
    body = _require_object(body, ("enable",), "maintenance request")
    if "enable" not in body:
        raise bad_request("maintenance request needs enable: true or false")
    enable = parse_bool(body["enable"], "enable")
    verb = "enable-node-maintenance" if enable else "disable-node-maintenance"
    return {"op": "crm_command_enqueue", "cmd": f"{verb} {node}"}


# ---------------------------------------------------------------- groups

def _group_fields(body: dict[str, Any], state: ClusterState) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "nodes" in body:
        out["nodes"] = parse_node_priorities(body["nodes"], state)
    for key in ("restricted", "nofailback"):
        if key in body:
            out[key] = parse_bool(body[key], key)
    if "comment" in body:
        out["comment"] = parse_comment(body["comment"])
    return out


def group_add(body: Any, state: ClusterState) -> dict[str, Any]:
    body = _require_object(body, ("group", "type", *GROUP_KEYS), "group")
    name = parse_id(body.get("group"), "group name")
    if name in state.groups:
        raise conflict(f"HA group '{name}' already defined")
    if "nodes" not in body:
        raise bad_request("a group needs nodes, e.g. 'node1:2,node2'")
    config: dict[str, Any] = {"restricted": False, "nofailback": False}
    config.update(_group_fields({k: v for k, v in body.items() if k not in ("group", "type")}, state))
    return {"op": "group_set", "name": name, "config": config}


def group_set(raw_name: Any, body: Any, state: ClusterState) -> dict[str, Any]:
    """A field-level edit (store op group_update)."""
    name = parse_id(raw_name, "group name")
    if name not in state.groups:
        raise not_found(f"no such HA group '{name}'")
    body = _require_object(body, ("delete", "digest", *GROUP_KEYS), "group")
    seen = parse_digest(body, state.groups[name])
    changes = _group_fields({k: v for k, v in body.items() if k not in ("delete", "digest")}, state)
    delete = _parse_delete(body.get("delete"), GROUP_DELETABLE)
    if not changes and not delete:
        raise bad_request("nothing to change")
    both = sorted(set(changes) & set(delete))
    if both:
        raise bad_request(f"cannot set and delete '{both[0]}' at once")
    command: dict[str, Any] = {"op": "group_update", "name": name, "changes": changes}
    if delete:
        command["delete"] = delete
    if seen:
        command["digest"] = seen
    return command


def group_remove(raw_name: Any, state: ClusterState) -> dict[str, Any]:
    name = parse_id(raw_name, "group name")
    if name not in state.groups:
        raise not_found(f"no such HA group '{name}'")
    users = sorted(sid for sid, cfg in state.resources.items() if cfg.get("group") == name)
    if users:
        raise conflict(f"HA group '{name}' is used by resource(s) {', '.join(users)}")
    return {"op": "group_remove", "name": name}


# ---------------------------------------------------------------- rules

def _rule_fields(body: dict[str, Any], state: ClusterState) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "resources" in body:
        raw = body["resources"]
        if isinstance(raw, str):
            raw = [part for part in re.split(r"[,;\s]+", raw) if part]
        if not isinstance(raw, list) or not raw:
            raise bad_request("resources must list at least one sid, e.g. 'vm:100,vm:101'")
        sids = sorted({parse_sid(item) for item in raw})
        missing = [sid for sid in sids if sid not in state.resources]
        if missing:
            raise bad_request(f"cannot use unmanaged resource(s) {', '.join(missing)}")
        out["resources"] = sids
    if "nodes" in body:
        out["nodes"] = parse_node_priorities(body["nodes"], state)
    if "strict" in body:
        out["strict"] = parse_bool(body["strict"], "strict")
    if "affinity" in body:
        if body["affinity"] not in AFFINITIES:
            raise bad_request(f"affinity must be positive or negative, got {body['affinity']!r}")
        out["affinity"] = body["affinity"]
    if "disable" in body:
        out["disable"] = parse_bool(body["disable"], "disable")
    if "comment" in body:
        out["comment"] = parse_comment(body["comment"])
    return out


def _check_rule_shape(rule_id: str, config: dict[str, Any]) -> None:
    kind = config["type"]
    if "resources" not in config:
        raise bad_request(f"rule '{rule_id}' needs resources")
    if kind == RuleType.NODE_AFFINITY:
        if "nodes" not in config:
            raise bad_request(f"node-affinity rule '{rule_id}' needs nodes")
        if "affinity" in config:
            raise bad_request("affinity applies to resource-affinity rules only")
    else:
        if "affinity" not in config:
            raise bad_request(f"resource-affinity rule '{rule_id}' needs affinity positive or negative")
        if "nodes" in config or "strict" in config:
            raise bad_request("nodes and strict apply to node-affinity rules only")


def rule_add(body: Any, state: ClusterState) -> dict[str, Any]:
    body = _require_object(body, ("rule", *RULE_KEYS), "rule")
    rule_id = parse_id(body.get("rule"), "rule id")
    if body.get("type") not in RULE_TYPES:
        raise bad_request(f"rule type must be one of {', '.join(RULE_TYPES)}, got {body.get('type')!r}")
    if rule_id in state.rules:
        raise conflict(f"HA rule '{rule_id}' already defined")
    config: dict[str, Any] = {"type": body["type"]}
    config.update(_rule_fields({k: v for k, v in body.items() if k not in ("rule", "type")}, state))
    _check_rule_shape(rule_id, config)
    if config["type"] == RuleType.NODE_AFFINITY:
        config.setdefault("strict", False)
    rule_check.assert_feasible(state, rule_id, config)
    return {"op": "rule_set", "rule_id": rule_id, "rule": config}


def rule_set(raw_id: Any, body: Any, state: ClusterState) -> dict[str, Any]:
    """A field-level edit (store op rule_update)."""
    rule_id = parse_id(raw_id, "rule id")
    if rule_id not in state.rules:
        raise not_found(f"HA rule '{rule_id}' does not exist")
    body = _require_object(body, ("delete", "digest", *RULE_KEYS), "rule")
    current = state.rules[rule_id]
    if "type" in body and body["type"] != current.get("type"):
        raise bad_request(f"rule '{rule_id}' is of type {current.get('type')}; its type cannot change")
    seen = parse_digest(body, current)
    changes = _rule_fields({k: v for k, v in body.items() if k not in ("type", "delete", "digest")}, state)
    delete = _parse_delete(body.get("delete"), RULE_DELETABLE)
    both = sorted(set(changes) & set(delete))
    if both:
        raise bad_request(f"cannot set and delete '{both[0]}' at once")
    if not changes and not delete:
        raise bad_request("nothing to change")
    merged = {**current, **changes}
    for key in delete:
        merged.pop(key, None)
    _check_rule_shape(rule_id, merged)
    rule_check.assert_feasible(state, rule_id, merged)
    command: dict[str, Any] = {"op": "rule_update", "rule_id": rule_id, "changes": changes}
    if delete:
        command["delete"] = delete
    if seen:
        command["digest"] = seen
    return command


def rule_remove(raw_id: Any, state: ClusterState) -> dict[str, Any]:
    rule_id = parse_id(raw_id, "rule id")
    if rule_id not in state.rules:
        raise not_found(f"HA rule '{rule_id}' does not exist")
    return {"op": "rule_remove", "rule_id": rule_id}

