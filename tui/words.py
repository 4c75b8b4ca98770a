"""Plain words for what the TUI shows: store events as sentences, values without Python
reprs or JSON, and one colour and one symbol for every node and service state.

No Textual, no sockets: tested on plain data.
"""

from __future__ import annotations

import json
import time
from typing import Any

# state -> (symbol, style class). Symbols are one cell wide in every terminal (no emoji).
STATES: dict[str, tuple[str, str]] = {
    # services (CRM states) and requested states
    "started": ("●", "ok"), "stopped": ("○", "dim"), "disabled": ("⊘", "dim"), "ignored": ("·", "dim"),
    "request_start": ("▷", "warn"), "request_start_balance": ("▷", "warn"), "request_stop": ("◻", "warn"),
    "migrate": ("→", "warn"), "relocate": ("↪", "warn"), "recovery": ("↻", "bad"), "fence": ("▲", "bad"),
    "freeze": ("*", "warn"), "error": ("✖", "bad"), "queued": ("…", "warn"),
    # nodes (CRM node states) and LRM states
    "online": ("●", "ok"), "maintenance": ("◐", "warn"), "unknown": ("?", "bad"), "gone": ("†", "dim"),
    "active": ("●", "ok"), "wait_for_agent_lock": ("○", "dim"), "lost_agent_lock": ("✖", "bad"),
    "startup": ("▷", "warn"), "restart": ("↻", "warn"), "shutdown": ("■", "warn"), "idle": ("○", "dim"),
    "dead": ("✖", "bad"),
    # watchdog and fencing
    "armed": ("●", "ok"), "closed": ("○", "dim"), "disarmed": ("⊘", "warn"), "disarming": ("◐", "warn"),
    "expired": ("✖", "bad"), "off": ("○", "bad"),
}


def state_class(state: str) -> str:
    """A style name for a state word (the first word of `state`; unknown words: warn)."""
    words = state.split()
    if words and len(words[0]) == 1 and len(words) > 1 and not words[0].isalnum():
        words = words[1:]               # '● started': the symbol's own word
    word = words[0] if words else "-"
    if word == "-":
        return "dim"
    if word == "?":
        return "bad"
    return STATES.get(word, ("", "warn"))[1]


def with_symbol(state: str | None) -> str:
    """'● started'; '-' for nothing known."""
    if not state or state in ("-", "?"):
        return state or "-"
    symbol = STATES.get(str(state).split(" ", 1)[0], ("◆", ""))[0]
    return f"{symbol} {state}"


def plain(value: Any) -> str:
    """A value as words: lists joined by commas, mappings as 'k v', no quotes or brackets."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple | set):
        return ", ".join(plain(v) for v in value) if value else "none"
    if isinstance(value, dict):
        return ", ".join(f"{k} {plain(v)}" for k, v in value.items()) if value else "none"
    return " ".join(str(value).split())


def priorities(nodes: Any) -> str:
    """{node: prio} as Proxmox writes it: 'node1:2,node2' (priority 0 left out)."""
    if not isinstance(nodes, dict):
        return plain(nodes)
    return ",".join(f"{n}:{p}" if p else str(n) for n, p in sorted(nodes.items(), key=lambda kv: (-kv[1], kv[0])))


def format_age(age_s: float | None) -> str:
    if age_s is None:
        return "-"
    age_s = max(0.0, age_s)
    if age_s < 10:
        return f"{age_s:.1f}s"
    if age_s < 120:
        return f"{age_s:.0f}s"
    if age_s < 7200:
        return f"{age_s / 60:.0f}m"
    return f"{age_s / 3600:.0f}h"


def format_clock(ts: Any) -> str:
    if not isinstance(ts, int | float) or not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ts)))


# ---------------------------------------------------------------- events

def event_detail(event: dict[str, Any]) -> dict[str, Any]:
    raw = event.get("detail")
    if isinstance(raw, dict):
        return raw
    try:
        data = json.loads(raw) if raw else {}
    except (TypeError, ValueError):
        return {"text": str(raw)}
    return data if isinstance(data, dict) else {"value": data}


def _config_words(config: Any) -> str:
    if not isinstance(config, dict):
        return plain(config)
    parts: list[str] = []
    for key, value in config.items():
        if key == "params" and isinstance(value, dict):
            parts.extend(f"{k}={plain(v)}" for k, v in value.items())
        elif key == "nodes":
            parts.append(f"nodes {priorities(value)}")
        else:
            parts.append(f"{key} {plain(value)}")
    return ", ".join(parts)


def _crm_command(cmd: str) -> str:
    words = cmd.split()
    if not words:
        return "an empty CRM command"
    verb, args = words[0], words[1:]
    if verb in ("migrate", "relocate") and len(args) == 2:
        return f"{verb} {args[0]} to {args[1]}"
    if verb == "stop" and len(args) == 2:
        return f"stop {args[0]} (timeout {args[1]}s)"
    if verb in ("enable-node-maintenance", "disable-node-maintenance") and args:
        return f"{verb.split('-', 1)[0]} maintenance on {args[0]}"
    return " ".join(words)


def _sentence(op: str, d: dict[str, Any]) -> str:
    sid, node = d.get("sid"), d.get("node")
    if op in ("observed", "simulator"):
        return str(d.get("text", ""))
    if op == "crm_command_enqueue":
        return f"asked the CRM to {_crm_command(str(d.get('cmd', '')))}"
    if op == "crm_command_consume":
        cmds = d.get("cmds") or d.get("cmd")
        if isinstance(cmds, list):
            return "the CRM took: " + "; ".join(_crm_command(str(c)) for c in cmds) if cmds else "the CRM took its commands"
        return "the CRM took its commands" if not cmds else f"the CRM took: {_crm_command(str(cmds))}"
    if op == "resource_add":
        cfg = d.get("config") or {}
        return f"service {sid} added on {cfg.get('node', '?')}, requested {cfg.get('state', 'started')}"
    if op in ("resource_update", "resource_set"):
        changes = d.get("changes") if "changes" in d else d.get("config")
        if isinstance(changes, dict) and set(changes) == {"state"}:
            return f"service {sid}: requested state set to {changes['state']}"
        return f"service {sid} changed: {_config_words(changes)}"
    if op == "resource_remove":
        return f"service {sid} removed from HA"
    if op == "resource_move":
        return f"service {sid} now placed on {d.get('node') or d.get('new') or d.get('to') or '?'}"
    if op in ("group_set", "group_update"):
        return f"group {d.get('name')} {'set' if op == 'group_set' else 'changed'}: {_config_words(d.get('config') or d.get('changes'))}"
    if op == "group_remove":
        return f"group {d.get('name')} removed"
    if op in ("rule_set", "rule_update"):
        return f"rule {d.get('rule_id')} {'set' if op == 'rule_set' else 'changed'}: {_config_words(d.get('rule') or d.get('changes'))}"
    if op == "rule_remove":
        return f"rule {d.get('rule_id')} removed"
    if op == "dc_options_set":
        opts = d.get("options") or {}
        words = "; ".join(f"{section}: {_config_words(v)}" for section, v in opts.items()) if isinstance(opts, dict) else plain(opts)
        return f"datacenter settings changed ({words or 'nothing'})"
    if op == "node_add":
        return f"node {node} joined the HA node list"
    if op == "node_remove":
        return f"node {node} left the HA node list"
    if op == "node_stats_set":
        return f"node {node} published its CPU and memory"
    if op.startswith("lease_"):
        verb = {"lease_acquire": "took", "lease_renew": "renewed", "lease_release": "released"}.get(op, op)
        who = d.get("holder") or d.get("node") or "?"
        return f"{who} {verb} lease {d.get('name') or d.get('lease') or '?'}"
    if op == "manager_status_set":
        return "the CRM master wrote its status"
    if op == "lrm_status_set":
        return f"the LRM of {node or '?'} wrote its status"
    rest = ", ".join(f"{k} {plain(v)}" for k, v in d.items() if k not in ("epoch",))
    return f"{op.replace('_', ' ')}" + (f": {rest}" if rest else "")


def event_line(event: dict[str, Any]) -> str:
    """One line in plain words for one history event (a store command, a rejection, a
    transition the TUI saw, a simulator log line)."""
    op = str(event.get("op") or "?")
    detail = event_detail(event)
    try:
        text = _sentence(op, detail)
    except Exception:  # noqa: BLE001 - a detail of an unexpected shape: its words, not a crash
        text = f"{op.replace('_', ' ')}: {plain(detail)}"
    if not event.get("ok", True):
        why = detail.get("error") or event.get("error")
        text = f"REFUSED {text}" + (f" ({plain(why)})" if why else "")
    return " ".join(text.split())


def event_mentions(event: dict[str, Any], sid: str) -> bool:
    detail = event_detail(event)
    if detail.get("sid") == sid:
        return True
    cmd = str(detail.get("cmd", ""))
    resources = detail.get("resources") or (detail.get("rule") or {}).get("resources") or []
    text = str(detail.get("text", ""))
    return sid in cmd.split() or sid in resources or f"'{sid}'" in text or f" {sid} " in f" {text} "
