"""``agent_for(sid, resource_config, ctx)``: build the agent of a service from its config
(harepl.core.types shape: ``{"type", "state", "node", ..., "params": {...}}``).

Service types and what runs them:

=========  ==================================================================================
``exec``   :class:`ExecAgent` — ``params.command`` (see ``exec_agent``)
``ocf``    :class:`OcfAgent` — ``params.agent`` = ``provider/type`` plus ``OCF_RESKEY_*`` params
``systemd````SystemdAgent`` — ``params.unit`` (default: the sid's name + ``.service``)
``fa``     Proxmox's "fake agent" of its regression tests → OCF ``heartbeat/Dummy``
``vm:ID``  ``params.backend`` (default ``virtualdomain``):
           ``virtualdomain`` → OCF ``heartbeat/VirtualDomain`` (needs ``config``, the libvirt
           domain XML; live migration through its ``migrate_to``/``migrate_from``, set
           ``migration_transport``/``hypervisor`` as for Pacemaker);
           ``ocf`` (any ``params.agent``) or ``exec`` (``params.command``).
``ct:ID``  ``params.backend`` (default ``podman``):
           ``podman`` → OCF ``heartbeat/podman`` (needs ``image``; ``name`` defaults to the
           sid; no live migration: migrate = stop here, start there, like Proxmox's restart
           migration of containers);
           ``lxc`` → OCF ``heartbeat/lxc`` (needs ``container`` and ``config``; offline);
           ``ocf`` or ``exec`` as for vm.
=========  ==================================================================================

The ``backend`` param is consumed here; the others go to the agent. ``vm``/``ct`` ids must be
numeric (Proxmox VMIDs). Every config problem raises :class:`AgentConfigError` whose message is
one line starting with the sid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harepl.core.vocabulary import SERVICE_TYPES

from .base import Agent, AgentConfigError
from .exec_agent import ExecAgent
from .ocf import OcfAgent
from .systemd import SystemdAgent

# backend -> (OCF agent, required params) for vm/ct
OCF_BACKENDS: dict[str, dict[str, tuple[str, tuple[str, ...]]]] = {
    "vm": {"virtualdomain": ("heartbeat/VirtualDomain", ("config",))},
    "ct": {"podman": ("heartbeat/podman", ("image",)), "lxc": ("heartbeat/lxc", ("container", "config"))},
}
DEFAULT_BACKEND = {"vm": "virtualdomain", "ct": "podman"}


@dataclass(frozen=True)
class AgentContext:
    """Where this node's agents keep state: ``run_dir`` (per node, survives a daemon restart)."""

    node: str
    run_dir: Path
    ocf_root: str | None = None


def split_sid(sid: str) -> tuple[str, str]:
    if not isinstance(sid, str) or ":" not in sid:
        raise AgentConfigError(f"{sid!r}: service id must look like 'type:name' (e.g. exec:web)")
    stype, name = sid.split(":", 1)
    if stype not in SERVICE_TYPES:
        raise AgentConfigError(f"{sid}: unknown service type '{stype}' (one of {', '.join(SERVICE_TYPES)})")
    if not name or any(c in name for c in "/\0\n") or name.strip() != name:
        raise AgentConfigError(f"{sid}: bad service name {name!r}")
    if stype in ("vm", "ct") and not name.isdigit():
        raise AgentConfigError(f"{sid}: {stype} ids are numeric (e.g. {stype}:100)")
    return stype, name


def agent_for(sid: str, resource_config: dict[str, Any], ctx: AgentContext) -> Agent:
    stype, name = split_sid(sid)
    ctype = resource_config.get("type", stype)
    if ctype != stype:
        raise AgentConfigError(f"{sid}: config type '{ctype}' does not match the sid's type '{stype}'")
    params = resource_config.get("params") or {}
    if not isinstance(params, dict):
        raise AgentConfigError(f"{sid}: 'params' must be a mapping, got {type(params).__name__}")
    params = dict(params)
    run_dir = Path(ctx.run_dir)
    if stype == "exec":
        return ExecAgent(sid, params, run_dir, ctx.node)
    if stype == "ocf":
        return OcfAgent(sid, params, run_dir, ctx.node, ctx.ocf_root)
    if stype == "systemd":
        return SystemdAgent(sid, params)
    if stype == "fa":
        params.setdefault("agent", "heartbeat/Dummy")
        return OcfAgent(sid, params, run_dir, ctx.node, ctx.ocf_root)
    # vm / ct
    backend = str(params.pop("backend", DEFAULT_BACKEND[stype])).lower()
    if backend == "exec":
        return ExecAgent(sid, params, run_dir, ctx.node)
    if backend == "ocf":
        return OcfAgent(sid, params, run_dir, ctx.node, ctx.ocf_root)
    known = OCF_BACKENDS[stype]
    if backend not in known:
        choices = ", ".join([*known, "ocf", "exec"])
        raise AgentConfigError(f"{sid}: unknown {stype} backend '{backend}' (one of {choices})")
    agent, required = known[backend]
    missing = [p for p in required if not params.get(p)]
    if missing:
        raise AgentConfigError(f"{sid}: {stype} backend '{backend}' needs parameter(s) {', '.join(missing)}")
    if backend == "podman":
        params.setdefault("name", f"harepl-{stype}-{name}")
    params["agent"] = agent
    return OcfAgent(sid, params, run_dir, ctx.node, ctx.ocf_root)
