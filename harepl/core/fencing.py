"""Fence devices: which to use for a node, in what order, and what their results mean
(pure; running the agents is `harepl/runtime/fence/`, reached through `Env.fence_device`).

Configuration: Proxmox's `fence.cfg` shape (`PVE::HA::FenceConfig`), accepted as is:

    device <name>[:<n>] <agent> [key=value ...]      # a device; :n makes parallel devices
    connect <name>[:<n>] node=<node> [key=value ...] # which node it powers, node's own args

Devices with the same name and different `:n` form one *level*: all of them must confirm
the node is off (redundant power supplies). Levels are tried in the order their name first
appears; the node's fence succeeds at the first level that confirms. Arguments go to the
agent as `key=value` lines on its standard input (the fence-agent API); a one-letter key
(Proxmox passes those as `-k value` on the command line) is mapped to the long name the
agents read on stdin. harepl adds one argument of its own per device line,
`harepl_timeout=<seconds>` (the time allowed for each action; default 20 s), which is not
passed to the agent.

Modes (datacenter option `fencing`, Proxmox's name): `watchdog` (default: a failed node is
fenced by its own watchdog; the master takes its lease only after it expired), `hardware`
(fence devices only: the master keeps trying them and never recovers on the lease timeout
alone) and `both` (the devices first; if every level fails, the watchdog wait as before).

A device confirms a node off only when its `off` succeeded and a `status` afterwards said
off (exit 2). Then the master takes the node's lease at once — by compare-and-swap on the
lease's (epoch, seq) as the master saw it when the fence started, so a node that renewed
since (a device that lied, or fenced the wrong machine) keeps its lease and nothing is
recovered from it — and its services go from `fence` to `recovery` in the same round.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

FENCING_MODES = ("watchdog", "hardware", "both")
DEFAULT_ACTION_TIMEOUT_S = 20.0
TIMEOUT_KEY = "harepl_timeout"
# Proxmox passes one-letter keys as short options; on stdin the agents want the long name
SHORT_KEYS = {"a": "ip", "l": "username", "p": "password", "u": "ipport", "n": "plug", "P": "lanplus",
              "C": "cipher", "L": "privlvl", "S": "password_script", "s": "ssh", "x": "ssh"}
# argument names whose values are secrets: never logged, never shown
SECRET_KEYS = frozenset({"password", "passwd", "password_script", "identity_file", "secret", "community",
                         "snmp_priv_passwd", "token"})


class FenceConfigError(ValueError):
    """A fence.cfg problem, with its line number."""


@dataclass(frozen=True)
class Call:
    """One agent run against one device for one node: ``device`` is ``name:n``."""

    device: str
    agent: str
    args: tuple[tuple[str, str], ...]
    timeout_s: float = DEFAULT_ACTION_TIMEOUT_S

    def stdin(self, action: str) -> str:
        """The agent's standard input for ``action`` (the fence-agent API)."""
        lines = [f"action={action}"] + [f"{k}={v}" for k, v in self.args if k != "action"]
        return "\n".join(lines) + "\n"

    def shown(self) -> str:
        """For logs and status: the agent and its arguments, secrets masked."""
        return f"{self.device} ({self.agent} " + " ".join(
            f"{k}={'***' if k in SECRET_KEYS else v}" for k, v in self.args) + ")"


@dataclass
class _SubDev:
    agent: str
    args: list[tuple[str, str]]
    timeout_s: float
    node_args: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


@dataclass(frozen=True)
class FenceConfig:
    """Devices by name in priority order; each is {n: sub-device}."""

    devices: tuple[tuple[str, Mapping[int, _SubDev]], ...] = ()

    def levels(self, node: str) -> list[list[Call]]:
        """The levels for ``node``, in order: each the parallel calls of one device name
        that ``node`` is connected to (Proxmox's get_commands, for every try at once)."""
        out = []
        for name, subs in self.devices:
            calls = [Call(f"{name}:{n}", sub.agent, tuple(sub.args + sub.node_args[node]), sub.timeout_s)
                     for n, sub in sorted(subs.items()) if node in sub.node_args]
            if calls:
                out.append(calls)
        return out

    def nodes(self) -> list[str]:
        return sorted({n for _, subs in self.devices for sub in subs.values() for n in sub.node_args})


def _args(words: list[str], lineno: int) -> list[tuple[str, str]]:
    out = []
    for w in words:
        key, eq, value = w.partition("=")
        if not eq or not key:
            raise FenceConfigError(f"line {lineno}: argument {w.split('=')[0]!r} is not key=value")
        out.append((SHORT_KEYS.get(key, key) if len(key) == 1 else key, value))
    return out


def parse_fence_cfg(text: str) -> FenceConfig:
    """Parse Proxmox's fence.cfg; every problem is one FenceConfigError naming its line."""
    devices: dict[str, dict[int, _SubDev]] = {}
    order: list[str] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            words = shlex.split(line)
        except ValueError as exc:
            raise FenceConfigError(f"line {lineno}: {exc}") from None
        if len(words) < 3 or words[0] not in ("device", "connect"):
            raise FenceConfigError(f"line {lineno}: expected 'device NAME[:N] AGENT ARGS...' or "
                                   "'connect NAME[:N] node=NODE ARGS...'")
        command, dev, target = words[0], words[1], words[2]
        name, _, num = dev.partition(":")
        if not name.replace("_", "").replace("-", "").isalnum() or (num and not num.isdigit()):
            raise FenceConfigError(f"line {lineno}: bad device name {dev!r}")
        n = int(num) if num else 1
        if command == "device":
            args = _args(words[3:], lineno)
            timeout_s = DEFAULT_ACTION_TIMEOUT_S
            kept = []
            for k, v in args:
                if k == TIMEOUT_KEY:
                    try:
                        timeout_s = float(v)
                    except ValueError:
                        timeout_s = -1.0
                    if not 0 < timeout_s < 3600:
                        raise FenceConfigError(f"line {lineno}: {TIMEOUT_KEY} must be a number of seconds "
                                               "between 0 and 3600")
                else:
                    kept.append((k, v))
            if name in devices and n in devices[name]:
                raise FenceConfigError(f"line {lineno}: device '{name}:{n}' already declared")
            if not target.startswith("fence_") or "/" in target:
                raise FenceConfigError(f"line {lineno}: agent {target!r} is not a fence agent name (fence_...)")
            if name not in devices:
                devices[name] = {}
                order.append(name)
            devices[name][n] = _SubDev(target, kept, timeout_s)
        else:
            if name not in devices:
                raise FenceConfigError(f"line {lineno}: device '{name}' must be declared before you can "
                                       "connect to it")
            if n not in devices[name]:
                raise FenceConfigError(f"line {lineno}: no parallel device '{name}:{n}'")
            key, _, node = target.partition("=")
            if key != "node" or not node:
                raise FenceConfigError(f"line {lineno}: node=NODENAME needed to connect device '{name}'")
            sub = devices[name][n]
            if node in sub.node_args:
                raise FenceConfigError(f"line {lineno}: node '{node}' already connected to device '{name}:{n}'")
            sub.node_args[node] = _args(words[3:], lineno)
    return FenceConfig(tuple((name, devices[name]) for name in order))


# --- results and decisions ---------------------------------------------------------------

@dataclass(frozen=True)
class DeviceResult:
    """What one level's attempt came to: ``off`` only when every parallel device of the
    level confirmed (off succeeded, then status said off)."""

    off: bool
    detail: str  # one line, no secrets
    seconds: float = 0.0


def level_confirmed(per_device: Mapping[str, str]) -> bool:
    """A level is confirmed only if each of its devices says "off" (confirmed)."""
    return bool(per_device) and all(v == "off" for v in per_device.values())


@dataclass
class NodeFence:
    """The master's progress fencing one node with its devices (kept in memory by the
    master; a new master starts again at the first level)."""

    level: int = 0
    passes: int = 0  # complete passes over every level that all failed
    confirmed: bool = False
    last: str = ""
    recorded_at: float | None = None  # the round whose manager_status recorded the confirmed off


@dataclass(frozen=True)
class Step:
    """What the master does for a node in 'fence' this round."""

    run_level: int | None = None  # run (or poll) the devices of this level
    take_lease_now: bool = False  # a device confirmed off: take the lease at once
    record: bool = False  # confirmed off: record it in this round's manager_status first
    lease_wait: bool = False  # the watchdog way: take the lease once it expired
    status: str = ""  # for ha-manager status (empty: nothing to say)


def fence_step(mode: str, n_levels: int, st: NodeFence, now: float = 0.0) -> Step:
    """The decision for one node in 'fence' (pure). A confirmed off is first recorded in
    the round's manager_status (written with the master's epoch: a deposed master's
    record is rejected and it forgets the fence); the lease is taken in a later round."""
    if mode not in ("hardware", "both") or n_levels == 0:
        if mode == "hardware":
            return Step(status="fencing = hardware but no fence device is configured for this node - "
                               "waiting for an operator (or its lease, like the watchdog mode)", lease_wait=True)
        return Step(lease_wait=True)
    if st.confirmed:
        status = f"confirmed off: {st.last}"
        if st.recorded_at is None or now <= st.recorded_at:
            return Step(record=True, status=status)
        return Step(take_lease_now=True, status=status)
    if st.passes and mode == "both":
        return Step(lease_wait=True, status=f"every fence device failed ({st.last}) - waiting for the "
                                            "watchdog (lease timeout)")
    status = f"fencing with level {st.level + 1}/{n_levels}"
    if st.passes:
        status = f"every fence device failed {st.passes} time(s) ({st.last}) - retrying, level {st.level + 1}"
    return Step(run_level=st.level, status=status)


def after_result(st: NodeFence, n_levels: int, result: DeviceResult) -> None:
    """Advance ``st`` after a level's attempt finished."""
    st.last = result.detail
    if result.off:
        st.confirmed = True
        return
    st.level += 1
    if st.level >= n_levels:
        st.level = 0
        st.passes += 1
