"""The API's routes: (method, path template) -> handler. No sockets here.

A handler gets a `Request` and returns JSON-able data (the response body as is) or
raises ApiError (body `{"error": "one line"}`). Writes read a fresh ClusterState, validate the body into one command
(`validate.py`), submit it, and report a rejection as 409 with apply's own message.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from harepl.runtime.api import members, rule_check
from harepl.runtime.api import options as dc
from harepl.runtime.api import validate as v
from harepl.runtime.api.backend import ApiBackend, BackendUnavailable, ClusterState
from harepl.runtime.api.errors import ApiError, bad_request, conflict, not_found
from harepl.store.reads import digest

API_PREFIX = ""  # unversioned paths; the lab probes GET /status


@dataclass
class Request:
    backend: ApiBackend
    params: dict[str, str]              # from the path template
    query: dict[str, str]
    body: Any = None
    wall_time: Callable[[], float] = time.time   # display only (status times)
    extra: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[Request], Any]


@dataclass(frozen=True)
class Route:
    method: str
    template: str                       # e.g. "/v1/resources/{sid}"
    handler: Handler
    pattern: re.Pattern[str]

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path)
        return None if found is None else found.groupdict()


def _compile(template: str) -> re.Pattern[str]:
    regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
    return re.compile(regex)


# ---------------------------------------------------------------- helpers

def _state(req: Request, fresh: bool = False) -> ClusterState:
    return req.backend.read_state(fresh=fresh)


def _submit(req: Request, command: dict[str, Any], state: ClusterState) -> Any:
    if not state.quorate:
        raise ApiError(503, f"cluster not ready - no quorum on node '{state.node}'")
    result = req.backend.submit(command)
    if not result.ok:
        raise conflict(result.error or "rejected by the store")
    return result.result


def _write(build: Callable[[Request, ClusterState], dict[str, Any]]) -> Handler:
    def handler(req: Request) -> Any:
        state = _state(req, fresh=True)
        command = build(req, state)
        return _submit(req, command, state)
    return handler


def _move(verb: str) -> Handler:
    """migrate / relocate: queue the CRM command, answer as Proxmox does (`sid`,
    `requested-node`, `comigrated-resources`, `blocking-resources`)."""
    def handler(req: Request) -> Any:
        state = _state(req, fresh=True)
        command = v.crm_move(verb, req.params["sid"], req.body, state)
        _submit(req, command, state)
        _, sid, node = command["cmd"].split()
        return rule_check.motion_info(state, sid, node)
    return handler


def _query_int(req: Request, key: str, default: int, minimum: int, maximum: int) -> int:
    if key not in req.query:
        return default
    return v.parse_int(req.query[key], f"query parameter '{key}'", minimum, maximum)


def _check_query(req: Request, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(req.query) - set(allowed))
    if unknown:
        raise bad_request(f"unknown query parameter '{unknown[0]}'")


# ---------------------------------------------------------------- reads

def status_summary(req: Request) -> Any:
    """A small health view: what `harepl lab` polls until the cluster is quorate."""
    _check_query(req, ())
    state = _state(req)
    return {"node": state.node, "quorate": state.quorate,
            "master_node": state.manager_status.get("master_node")}


def status_current(req: Request) -> Any:
    """Proxmox's /cluster/ha/status/current: a list of quorum/master/lrm/service entries."""
    _check_query(req, ())
    from harepl.runtime.api.status import status_entries
    return status_entries(_state(req), now_wall_s=req.wall_time())


def status_manager(req: Request) -> Any:
    _check_query(req, ())
    state = _state(req)
    return {
        "manager_status": state.manager_status,
        "quorum": {"node": state.node, "quorate": state.quorate},
        "lrm_status": state.lrm_status,
        "datacenter": state.datacenter,
    }


def nodes_index(req: Request) -> Any:
    _check_query(req, ())
    state = _state(req)
    node_status = state.manager_status.get("node_status", {})
    names = sorted(set(state.nodes) | set(node_status) | set(state.lrm_status))
    out = []
    for name in names:
        lrm = state.lrm_status.get(name, {})
        out.append({
            "node": name,
            "status": node_status.get(name),
            "master": state.manager_status.get("master_node") == name,
            "lrm_mode": lrm.get("mode"),
            "lrm_state": lrm.get("state"),
            # static capacity the node published (the 'static' scheduler's maxcpu/maxmem)
            **{k: int(x) for k, x in state.node_stats.get(name, {}).items()},
        })
    return out


def _resource_view(sid: str, config: dict[str, Any]) -> dict[str, Any]:
    # digest: what an edit sends back to be refused if the resource changed meanwhile
    return {"sid": sid, **config, "digest": digest(config)}


def resources_index(req: Request) -> Any:
    _check_query(req, ("type",))
    kind = req.query.get("type")
    if kind is not None and kind not in v.SERVICE_TYPES:
        raise bad_request(f"type must be one of {', '.join(v.SERVICE_TYPES)}")
    state = _state(req)
    out = []
    for sid in sorted(state.resources):
        config = state.resources[sid]
        if kind and config.get("type") != kind:
            continue
        item = _resource_view(sid, config)
        group = config.get("group")
        if group and group not in state.groups:
            item["errors"] = {"group": f"group '{group}' does not exist"}
        out.append(item)
    return out


def resource_read(req: Request) -> Any:
    state = _state(req)
    sid = v.existing_sid(req.params["sid"], state)
    return _resource_view(sid, state.resources[sid])


def groups_index(req: Request) -> Any:
    _check_query(req, ())
    state = _state(req)
    return [{"group": name, **state.groups[name], "digest": digest(state.groups[name])}
            for name in sorted(state.groups)]


def group_read(req: Request) -> Any:
    state = _state(req)
    name = v.parse_id(req.params["group"], "group name")
    if name not in state.groups:
        raise not_found(f"no such HA group '{name}'")
    return {"group": name, **state.groups[name], "digest": digest(state.groups[name])}


def rules_index(req: Request) -> Any:
    _check_query(req, ("type", "resource"))
    kind = req.query.get("type")
    if kind is not None and kind not in v.RULE_TYPES:
        raise bad_request(f"type must be one of {', '.join(v.RULE_TYPES)}")
    resource = v.parse_sid(req.query["resource"]) if "resource" in req.query else None
    state = _state(req)
    errors = rule_check.rule_errors(state)
    out = []
    for rule_id in sorted(state.rules):
        rule = state.rules[rule_id]
        if kind and rule.get("type") != kind:
            continue
        if resource and resource not in rule.get("resources", []):
            continue
        out.append(rule_check.with_errors(state, rule_id, {"rule": rule_id, **rule, "digest": digest(rule)},
                                          errors))
    return out


def rule_read(req: Request) -> Any:
    state = _state(req)
    rule_id = v.parse_id(req.params["rule"], "rule id")
    if rule_id not in state.rules:
        raise not_found(f"HA rule '{rule_id}' does not exist")
    view = {"rule": rule_id, **state.rules[rule_id], "digest": digest(state.rules[rule_id])}
    return rule_check.with_errors(state, rule_id, view, rule_check.rule_errors(state))


STATUS_WRITE_OPS = ("manager_status_set", "lrm_status_set")   # every loop: noise for an operator
EVENTS_SCAN_MAX = 10_000     # the store keeps at most this many events


def _interesting(event: dict[str, Any]) -> bool:
    return not event.get("ok", True) or event.get("op") not in STATUS_WRITE_OPS


def options_read(req: Request) -> Any:
    _check_query(req, ())
    return dc.options_view(_state(req))


def events_index(req: Request) -> Any:
    _check_query(req, ("after", "limit", "include_status"))
    after = _query_int(req, "after", -1, 0, 2**62) if "after" in req.query else None
    limit = _query_int(req, "limit", 100, 1, 1000)
    include_status = v.parse_bool(req.query.get("include_status", "1"), "query parameter 'include_status'")
    if include_status:
        return req.backend.read_events(after_seq=after, limit=limit)
    # status writes left out (their rejections stay): scan past them, within the store's bound
    if after is None:
        kept = [e for e in req.backend.read_events(after_seq=None, limit=EVENTS_SCAN_MAX) if _interesting(e)]
        return kept[-limit:]
    out: list[dict[str, Any]] = []
    scanned = 0
    while len(out) < limit and scanned < EVENTS_SCAN_MAX:
        page = req.backend.read_events(after_seq=after, limit=1000)
        if not page:
            break
        scanned += len(page)
        after = int(page[-1]["seq"])
        out.extend(e for e in page if _interesting(e))
    return out[:limit]


# ---------------------------------------------------------------- table

ROUTES_SPEC: list[tuple[str, str, Handler]] = [
    ("GET", "/status", status_summary),
    ("GET", "/status/current", status_current),
    ("GET", "/status/manager_status", status_manager),
    ("GET", "/nodes", nodes_index),
    ("POST", "/nodes/{node}/maintenance",
     _write(lambda r, s: v.node_maintenance(r.params["node"], r.body, s))),
    ("GET", "/resources", resources_index),
    ("POST", "/resources", _write(lambda r, s: v.resource_add(r.body, s))),
    ("GET", "/resources/{sid}", resource_read),
    ("PUT", "/resources/{sid}", _write(lambda r, s: v.resource_set(r.params["sid"], r.body, s))),
    ("DELETE", "/resources/{sid}",
     _write(lambda r, s: v.resource_remove(r.params["sid"], s, r.query.get("purge")))),
    ("POST", "/resources/{sid}/migrate", _move("migrate")),
    ("POST", "/resources/{sid}/relocate", _move("relocate")),
    ("POST", "/resources/{sid}/stop", _write(lambda r, s: v.crm_stop(r.params["sid"], r.body, s))),
    ("GET", "/groups", groups_index),
    ("POST", "/groups", _write(lambda r, s: v.group_add(r.body, s))),
    ("GET", "/groups/{group}", group_read),
    ("PUT", "/groups/{group}", _write(lambda r, s: v.group_set(r.params["group"], r.body, s))),
    ("DELETE", "/groups/{group}", _write(lambda r, s: v.group_remove(r.params["group"], s))),
    ("GET", "/rules", rules_index),
    ("POST", "/rules", _write(lambda r, s: v.rule_add(r.body, s))),
    ("GET", "/rules/{rule}", rule_read),
    ("PUT", "/rules/{rule}", _write(lambda r, s: v.rule_set(r.params["rule"], r.body, s))),
    ("DELETE", "/rules/{rule}", _write(lambda r, s: v.rule_remove(r.params["rule"], s))),
    ("GET", "/events", events_index),
    ("GET", "/cluster/options", options_read),
    ("PUT", "/cluster/options", _write(lambda r, s: dc.options_set(r.body, s))),
    *members.ROUTES_SPEC,
]

ROUTES: list[Route] = [
    Route(method, API_PREFIX + template, handler, _compile(API_PREFIX + template))
    for method, template, handler in ROUTES_SPEC
]

# served by the HTTP layer itself (not JSON): listed so the OpenAPI test sees every path
EXTRA_ROUTES: list[tuple[str, str]] = [("GET", "/metrics")]


def find_route(method: str, path: str) -> tuple[Route, dict[str, str]]:
    """The route for (method, path) or ApiError 404/405."""
    allowed = []
    for route in ROUTES:
        params = route.match(path)
        if params is None:
            continue
        if route.method == method:
            return route, params
        allowed.append(route.method)
    if allowed:
        raise ApiError(405, f"method {method} not allowed on {path} (allowed: {', '.join(sorted(allowed))})")
    raise not_found(f"no such API path '{path}'")


def dispatch(req: Request, method: str, path: str) -> Any:
    route, params = find_route(method, path)
    req.params = {key: unquote(value) for key, value in params.items()}
    try:
        return route.handler(req)
    except BackendUnavailable as exc:
        raise ApiError(503, str(exc) or "backend unavailable") from None
