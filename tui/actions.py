"""The operator's actions as API requests (the same routes `ha-manager` uses), and what
each one is waiting for.

An `Action` is a plain description (what to ask, how to say it, and `expect`: how to
tell from a later snapshot that it happened, failed, or is still under way). The API
accepting a CRM command only means it was queued: the app follows it through the next
refreshes until `expect` says done or failed, or until FOLLOW_TIMEOUT_S. Nothing here
knows about Textual.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harepl.core.vocabulary import REQUESTED_STATES
from harepl.runtime.api.client import ApiClientError, seg
from tui.model import MOVING, Snapshot

# Proxmox's request states (`enabled` is an alias of started)
REQUEST_STATES = REQUESTED_STATES
FOLLOW_TIMEOUT_S = 120.0     # longest a followed command is waited for (wall or simulated seconds)

# a verdict: None (still under way) or (ok, words)
Verdict = tuple[bool, str] | None
Expect = Callable[[Snapshot], Verdict]


@dataclass(frozen=True)
class Action:
    title: str                  # "migrate exec:web to node3": the confirmation and the result line
    method: str
    path: str
    body: Any = None
    expect: Expect | None = field(default=None, compare=False)   # None: done when the API accepts


@dataclass(frozen=True)
class Outcome:
    ok: bool
    line: str
    queued: bool = False        # accepted; the app now follows `expect`


def _sd(snap: Snapshot, sid: str) -> dict[str, Any]:
    return snap.service_status(sid)


def _failed_here(snap: Snapshot, sid: str) -> Verdict:
    sd = _sd(snap, sid)
    if sd.get("state") == "error":
        failure = snap.agent_failure(sid)
        return False, f"{sid} is in error on {sd.get('node')}" + ("" if failure == "-" else f" ({failure})")
    return None


def _reach_state(sid: str, want: str) -> Expect:
    def check(snap: Snapshot) -> Verdict:
        if snap.resource(sid) is None:
            return False, f"{sid} was removed meanwhile"
        sd = _sd(snap, sid)
        if sd.get("state") == want:
            return True, f"{sid} is {want} on {sd.get('node')}"
        return _failed_here(snap, sid)
    return check


def _move(sid: str, node: str) -> Expect:
    seen: dict[str, bool] = {"moving": False}

    def check(snap: Snapshot) -> Verdict:
        sd = _sd(snap, sid)
        state = sd.get("state")
        if state in MOVING:
            seen["moving"] = True
            return None
        if sd.get("node") == node and state in ("started", "stopped"):
            return True, f"{sid} is {state} on {node}"
        failed = _failed_here(snap, sid)
        if failed is not None:
            return failed
        if seen["moving"]:
            return False, f"the CRM did not move {sid}: it is {state} on {sd.get('node')}"
        return None
    return check


def _gone(sid: str) -> Expect:
    def check(snap: Snapshot) -> Verdict:
        if snap.resource(sid) is None and not _sd(snap, sid):
            return True, f"{sid} is no longer managed"
        return None
    return check


def _node_mode(node: str, enable: bool) -> Expect:
    def check(snap: Snapshot) -> Verdict:
        state = snap.node_state(node)
        lrm = next((n for n in snap.nodes if n.get("node") == node), {})
        if enable and state == "maintenance":
            left = [s for s, sd in (snap.manager_status.get("service_status") or {}).items()
                    if sd.get("node") == node and sd.get("state") not in ("stopped", "ignored")]
            if not left:
                return True, f"{node} is in maintenance, its services moved away"
            return None
        if not enable and state == "online" and lrm.get("lrm_mode") != "maintenance":
            return True, f"{node} is online and out of maintenance"
        return None
    return check


def migrate(sid: str, node: str) -> Action:
    return Action(f"migrate {sid} to {node}", "POST", f"/resources/{seg(sid)}/migrate", {"node": node},
                  _move(sid, node))


def relocate(sid: str, node: str) -> Action:
    return Action(f"relocate {sid} to {node}", "POST", f"/resources/{seg(sid)}/relocate", {"node": node},
                  _move(sid, node))


def set_state(sid: str, state: str) -> Action:
    verb = {"started": "enable", "disabled": "disable"}.get(state, f"set requested state {state} on")
    expect: Expect | None
    if state == "started":
        expect = _reach_state(sid, "started")
    elif state in ("stopped", "disabled"):
        expect = _reach_state(sid, "stopped")
    else:   # ignored: the CRM lets go of it
        expect = None
    return Action(f"{verb} {sid}", "PUT", f"/resources/{seg(sid)}", {"state": state}, expect)


def stop(sid: str, timeout_s: int) -> Action:
    return Action(f"stop {sid} (timeout {timeout_s}s)", "POST", f"/resources/{seg(sid)}/stop",
                  {"timeout": timeout_s}, _reach_state(sid, "stopped"))


def maintenance(node: str, enable: bool) -> Action:
    verb = "enable" if enable else "disable"
    return Action(f"{verb} maintenance on {node}", "POST", f"/nodes/{seg(node)}/maintenance",
                  {"enable": enable}, _node_mode(node, enable))


def remove(sid: str) -> Action:
    return Action(f"remove {sid} from HA", "DELETE", f"/resources/{seg(sid)}", None, _gone(sid))


def add(sid: str, node: str, state: str, params: dict[str, str]) -> Action:
    """`ha-manager add SID --node NODE --state STATE [--command ...|--param K=V]`."""
    body: dict[str, Any] = {"sid": sid, "node": node, "state": state}
    if params:
        body["params"] = params
    expect = _reach_state(sid, "started" if state == "started" else "stopped") \
        if state in ("started", "stopped", "disabled") else None
    return Action(f"add {sid} on {node} ({state})", "POST", "/resources", body, expect)


def parse_params(text: str) -> dict[str, str]:
    """'command=sleep 100' or 'k=v k2=v2': the agent's parameters. An exec: command is
    everything after 'command=' (spaces included); raises ValueError with one line."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("command="):
        return {"command": text[len("command="):].strip()}
    out: dict[str, str] = {}
    for word in text.split():
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise ValueError(f"'{word}' is not KEY=VALUE")
        out[key] = value
    return out


def _result_words(result: Any) -> str:
    if not isinstance(result, dict) or not result:
        return ""
    seq = result.get("seq")
    return f" (store seq {seq})" if seq is not None else ""


def perform(request: Callable[[str, str, Any], Any], action: Action) -> Outcome:
    """Blocking. Never raises for an API failure: the outcome carries its one line."""
    try:
        result = request(action.method, action.path, action.body)
    except ApiClientError as exc:
        why = " ".join(exc.message.split())
        if exc.status == 503:
            why = f"no quorum or store unavailable: {why}"
        elif exc.status is None:
            why = f"API node unreachable: {why}"
        return Outcome(False, f"{action.title} refused: {why}")
    except Exception as exc:  # noqa: BLE001 - one line in the status bar instead of a crash
        return Outcome(False, f"{action.title} failed: {type(exc).__name__}: {exc}")
    if action.expect is None:
        return Outcome(True, f"{action.title}: done{_result_words(result)}")
    return Outcome(True, f"{action.title}: accepted{_result_words(result)}, waiting for the cluster ...",
                   queued=True)


@dataclass
class Follow:
    """An accepted action being followed to its outcome through the refreshes."""

    action: Action
    started_s: float            # the snapshot clock (wall, or simulated) when it was accepted
    timeout_s: float = FOLLOW_TIMEOUT_S

    def check(self, snap: Snapshot) -> tuple[bool, str] | None:
        """(ok, the line to show) once decided, else None."""
        assert self.action.expect is not None
        took = snap.wall_time_s - self.started_s
        verdict = self.action.expect(snap)
        if verdict is not None:
            ok, words = verdict
            return ok, f"{self.action.title}: {'done' if ok else 'FAILED'}: {words} (after {took:.1f}s)"
        if took > self.timeout_s:
            return False, f"{self.action.title}: not done after {took:.0f}s (still queued or under way)"
        return None
