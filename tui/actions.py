"""The operator's actions as API requests (the same routes `ha-manager` uses).

An `Action` is a plain description (what to ask, how to say it); `perform` sends it with
the blocking client (in a worker thread) and returns the one line to show: the API's
result, or its one-line error. Nothing here knows about Textual.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from harepl.runtime.api.client import ApiClient, ApiClientError, seg

# Proxmox's request states (`enabled` is an alias of started)
REQUEST_STATES = ("started", "stopped", "disabled", "ignored")


@dataclass(frozen=True)
class Action:
    title: str                  # "migrate exec:web to node3": the confirmation and the result line
    method: str
    path: str
    body: Any = None


@dataclass(frozen=True)
class Outcome:
    ok: bool
    line: str


def migrate(sid: str, node: str) -> Action:
    return Action(f"migrate {sid} to {node}", "POST", f"/resources/{seg(sid)}/migrate", {"node": node})


def relocate(sid: str, node: str) -> Action:
    return Action(f"relocate {sid} to {node}", "POST", f"/resources/{seg(sid)}/relocate", {"node": node})


def set_state(sid: str, state: str) -> Action:
    verb = {"started": "enable", "disabled": "disable"}.get(state, f"set requested state {state} on")
    return Action(f"{verb} {sid}", "PUT", f"/resources/{seg(sid)}", {"state": state})


def stop(sid: str, timeout_s: int) -> Action:
    return Action(f"stop {sid} (timeout {timeout_s}s)", "POST", f"/resources/{seg(sid)}/stop",
                  {"timeout": timeout_s})


def maintenance(node: str, enable: bool) -> Action:
    verb = "enable" if enable else "disable"
    return Action(f"{verb} maintenance on {node}", "POST", f"/nodes/{seg(node)}/maintenance",
                  {"enable": enable})


def remove(sid: str) -> Action:
    return Action(f"remove {sid} from HA", "DELETE", f"/resources/{seg(sid)}")


def _result_text(result: Any) -> str:
    if result in (None, {}, []):
        return ""
    if isinstance(result, dict):
        return " ".join(f"{k}={v if isinstance(v, str) else json.dumps(v, sort_keys=True, separators=(',', ':'))}"
                        for k, v in sorted(result.items()))
    return json.dumps(result, sort_keys=True, separators=(",", ":"))


def perform(client: ApiClient, action: Action) -> Outcome:
    """Blocking. Never raises for an API failure: the outcome carries its one line."""
    try:
        result = client.request(action.method, action.path, action.body)
    except ApiClientError as exc:
        return Outcome(False, f"{action.title} failed: {' '.join(exc.message.split())}")
    extra = _result_text(result)
    return Outcome(True, f"{action.title}: done" + (f" ({extra})" if extra else ""))
