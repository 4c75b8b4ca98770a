"""Scenario commands: validation of every cmdlist verb, and the fault verbs' effects.

The verbs Proxmox's simulator knows are carried out by Simulation.hardware_cmd; the fault
verbs harepl adds (docs/testing.md, "Simulator fault verbs") by `fault_cmd` here:
  stall NODE ROUNDS          the node's daemon (CRM and LRM) takes no step for ROUNDS rounds;
                             its services keep running, its watchdog keeps counting
  agent SID FAULT [COUNT]    the next COUNT matching agent calls of SID fail, hang or die
                             (FAULT: start-fail start-hang stop-fail stop-hang
                             die-after-start); `agent SID ok` drops what is left
  service SID die            SID dies where it runs now (its monitor reports it)
  store NODE slow ROUNDS     NODE's writes time out and apply ROUNDS rounds later;
                             `store NODE ok` ends it
  store leader-change ROUNDS no write commits anywhere for ROUNDS rounds (lost)
  link NODE NODE off|on      the two nodes cannot reach each other (partial partition)
  disk NODE full|ok          NODE's store member cannot persist: writes not acknowledged
  member NODE join|leave     NODE joins/leaves the cluster's member list (a node added or
                             removed mid-run; a non-member is never quorate; hardware_status
                             may give `"member": false` for a node that joins later)
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from harepl.core.config import ConfigError, parse_sid
from harepl.sim.agents import AGENT_FAULTS

if TYPE_CHECKING:
    from harepl.sim.hardware import NodeHw
    from harepl.sim.runner import Simulation


class ScenarioError(Exception):
    """Malformed scenario input (one line)."""


NODE_CMDS = {"power", "network", "cfs", "reboot", "shutdown", "restart-lrm", "crm", "pve-manager-version"}
FAULT_CMDS = {"stall", "agent", "store", "link", "disk", "member"}
# commands the stalled daemon itself would carry out: they wait until it resumes
DAEMON_CMDS = {"reboot", "shutdown", "restart-lrm", "crm"}


def _count(text: str, cmd: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise ScenarioError(f"cmdlist: bad count in '{cmd}' (a whole number >= 1)")
    return int(text)


def validate_fault(parts: list[str], cmd: str, nodes: dict[str, NodeHw]) -> None:
    def node(i: int) -> None:
        if len(parts) <= i or parts[i] not in nodes:
            raise ScenarioError(f"cmdlist: unknown node '{parts[i] if len(parts) > i else ''}' in '{cmd}'")

    head = parts[0]
    usage = {
        "stall": "stall NODE ROUNDS",
        "agent": f"agent SID {'|'.join(AGENT_FAULTS)}|ok [COUNT]",
        "store": "store NODE slow ROUNDS | store NODE ok | store leader-change ROUNDS",
        "link": "link NODE NODE off|on",
        "disk": "disk NODE full|ok",
        "member": "member NODE join|leave",
    }[head]
    try:
        if head == "stall" and len(parts) == 3:
            node(1)
            _count(parts[2], cmd)
            return
        if head == "agent" and len(parts) in (3, 4):
            try:
                parse_sid(parts[1])
            except ConfigError as exc:
                raise ScenarioError(f"cmdlist: {exc}") from None
            if parts[2] in AGENT_FAULTS or (parts[2] == "ok" and len(parts) == 3):
                if len(parts) == 4:
                    _count(parts[3], cmd)
                return
        if head == "store":
            if parts[1:2] == ["leader-change"] and len(parts) == 3:
                _count(parts[2], cmd)
                return
            if len(parts) >= 3 and parts[2] in ("slow", "ok"):
                node(1)
                if parts[2] == "ok" and len(parts) == 3:
                    return
                if parts[2] == "slow" and len(parts) == 4:
                    _count(parts[3], cmd)
                    return
        if head == "link" and len(parts) == 4 and parts[3] in ("on", "off"):
            node(1)
            node(2)
            if parts[1] != parts[2]:
                return
        if head == "disk" and len(parts) == 3 and parts[2] in ("full", "ok"):
            node(1)
            return
        if head == "member" and len(parts) == 3 and parts[2] in ("join", "leave"):
            node(1)
            return
    except IndexError:
        pass
    raise ScenarioError(f"cmdlist: bad command '{cmd}' ({usage})")


def validate_command(cmd: str, nodes: dict[str, NodeHw]) -> None:
    parts = cmd.split()
    if not parts:
        raise ScenarioError("cmdlist: empty command")
    head = parts[0]

    def need(n: int) -> None:
        if len(parts) < n:
            raise ScenarioError(f"cmdlist: incomplete command '{cmd}'")

    if head == "delay":
        need(2)
        if not re.fullmatch(r"\d+(\.\d+)?", parts[1]):
            raise ScenarioError(f"cmdlist: bad delay '{cmd}'")
        return
    if head == "skip-round":
        need(2)
        if parts[1] not in ("crm", "lrm") or (len(parts) > 2 and not parts[2].isdigit()):
            raise ScenarioError(f"cmdlist: bad command '{cmd}' (skip-round crm|lrm [N])")
        return
    if head in FAULT_CMDS:
        validate_fault(parts, cmd, nodes)
        return
    if head in NODE_CMDS:
        need(2)
        if parts[1] not in nodes:
            raise ScenarioError(f"cmdlist: unknown node '{parts[1]}' in '{cmd}'")
        if head in ("power", "network"):
            need(3)
            if parts[2] not in ("on", "off"):
                raise ScenarioError(f"cmdlist: bad action in '{cmd}' (on|off)")
        elif head == "cfs":
            need(4)
            if parts[2] not in ("rw", "update") or parts[3] not in ("work", "fail"):
                raise ScenarioError(f"cmdlist: bad command '{cmd}' (cfs NODE rw|update work|fail)")
        elif head == "crm":
            need(3)
            if parts[2] not in ("stop", "start", "enable-node-maintenance", "disable-node-maintenance",
                                "disarm-ha", "arm-ha"):
                raise ScenarioError(f"cmdlist: unknown crm action in '{cmd}'")
        return
    if head == "service":
        need(3)
        try:
            parse_sid(parts[1])
        except ConfigError as exc:
            raise ScenarioError(f"cmdlist: {exc}") from None
        action = parts[2]
        if action in ("started", "stopped", "disabled", "ignored", "enabled", "delete", "lock", "unlock"):
            return
        if action in ("migrate", "relocate", "manual-migrate", "add"):
            need(4)
            if parts[3] not in nodes:
                raise ScenarioError(f"cmdlist: unknown node '{parts[3]}' in '{cmd}'")
            return
        if action == "stop":
            need(4)
            if not parts[3].isdigit():
                raise ScenarioError(f"cmdlist: bad timeout in '{cmd}'")
            return
        if action in ("set-static-stats", "set-dynamic-stats", "die"):
            return
        raise ScenarioError(f"cmdlist: unknown service action in '{cmd}'")
    raise ScenarioError(f"cmdlist: unknown command '{cmd}'")


def fault_cmd(sim: Simulation, parts: list[str]) -> None:
    """Carry out one (validated) fault verb."""
    hw = sim.hw
    head = parts[0]
    if head == "stall":
        node = parts[1]
        r = sim.roles[node]
        if hw.nodes[node].power == "on" and (r.crm is not None or r.lrm is not None):
            sim.stalled[node] = max(sim.stalled.get(node, 0), int(parts[2]))
    elif head == "agent":
        if parts[2] == "ok":
            hw.agent_faults.pop(parts[1], None)
        else:
            hw.agent_faults.setdefault(parts[1], []).extend([parts[2]] * (int(parts[3]) if len(parts) > 3 else 1))
    elif head == "store":
        if parts[1] == "leader-change":
            hw.store.leaderless_until = max(hw.store.leaderless_until, sim.rounds + 1 + int(parts[2]))
        elif parts[2] == "slow":
            hw.store.slow[parts[1]] = int(parts[3])
        else:
            hw.store.slow.pop(parts[1], None)
    elif head == "link":
        pair = frozenset(parts[1:3])
        if parts[3] == "off":
            hw.links_cut.add(pair)
        else:
            hw.links_cut.discard(pair)
        hw.partition_changed()
    elif head == "disk":
        hw.nodes[parts[1]].disk_full = parts[2] == "full"
        hw.partition_changed()
    elif head == "member":
        hw.nodes[parts[1]].member = parts[2] == "join"
        hw.partition_changed()
