"""A local cluster of node daemons on 127.0.0.1 (`harepl lab ...`).

Layout of a lab directory:

    DIR/lab.json            nodes, ports, profile and the PID of every daemon started
    DIR/secret              the cluster secret (0600)
    DIR/<node>/harepl.toml  that node's config
    DIR/<node>/data/        its Raft journal, snapshots and SQLite database
    DIR/<node>/api.sock     its local API
    DIR/<node>/harepl.log   its log (Proxmox-shaped lines)
    DIR/<node>/daemon.out   its stdout/stderr (tracebacks, if any)

Each daemon runs in its own session (setsid): killing a node kills the whole session —
daemon, process watchdog and services — and every service cgroup of the node (a service
that left the session is still in its cgroup; see ``agents/cgroup.py``), like pulling its
power cord.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harepl.runtime import procs
from harepl.runtime.agents import cgroup
from harepl.runtime.apiprobe import ApiUnavailable, get_json

LAB_FILE = "lab.json"
# AF_UNIX paths are limited to 107 bytes on Linux.
MAX_SOCKET_PATH = 107


class LabError(RuntimeError):
    """One line for the operator."""


@dataclass
class LabNode:
    name: str
    raft_port: int
    dir: Path

    @property
    def config(self) -> Path:
        return self.dir / "harepl.toml"

    @property
    def api_socket(self) -> Path:
        return self.dir / "api.sock"

    @property
    def log(self) -> Path:
        return self.dir / "harepl.log"

    @property
    def marker(self) -> str:
        return str(self.dir)


class Lab:
    def __init__(self, directory: Path) -> None:
        self.dir = directory.resolve()
        self.state: dict[str, Any] = {}

    # --- persistent state -------------------------------------------------------------
    @property
    def _file(self) -> Path:
        return self.dir / LAB_FILE

    def load(self) -> Lab:
        try:
            self.state = json.loads(self._file.read_text())
        except FileNotFoundError:
            raise LabError(f"no lab in {self.dir} (run `harepl lab up --dir {self.dir}` first)") from None
        except (OSError, ValueError) as exc:
            raise LabError(f"cannot read {self._file}: {exc}") from None
        return self

    def _save(self) -> None:
        tmp = self._file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=2, sort_keys=True))
        os.replace(tmp, self._file)

    @property
    def nodes(self) -> list[LabNode]:
        return [LabNode(n["name"], n["raft_port"], self.dir / n["name"]) for n in self.state["nodes"]]

    def node(self, name: str) -> LabNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise LabError(f"no node {name!r} in the lab at {self.dir} "
                       f"(nodes: {', '.join(n.name for n in self.nodes)})")

    def pid(self, name: str) -> int | None:
        pid = self.state.get("pids", {}).get(name)
        return int(pid) if pid else None

    # --- creation ---------------------------------------------------------------------
    def create(self, n_nodes: int, profile: str, timing_overrides: dict[str, float] | None = None,
               fence_device: str | None = None) -> None:
        if n_nodes < 1:
            raise LabError("--nodes must be at least 1")
        if self._file.exists():
            old = Lab(self.dir).load()
            if old.running():
                raise LabError(f"a lab is already running in {self.dir} (nodes up: "
                               f"{', '.join(old.running())}); `harepl lab down --dir {self.dir}` first")
        self.dir.mkdir(parents=True, exist_ok=True)
        names = [f"node{i}" for i in range(1, n_nodes + 1)]
        longest = self.dir / names[-1] / "api.sock"
        if len(str(longest).encode()) > MAX_SOCKET_PATH:
            raise LabError(f"lab directory path too long for a Unix socket ({longest}); use a shorter --dir")
        ports = _free_ports(n_nodes)
        secret_file = self.dir / "secret"
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
        os.chmod(secret_file, 0o600)
        self.state = {"profile": profile, "nodes": [{"name": nm, "raft_port": p} for nm, p in zip(names, ports, strict=True)],
                      "pids": {}, "timing": dict(timing_overrides or {})}
        if fence_device is not None:
            self._create_bmcs(fence_device, names)
        for node in self.nodes:
            node.dir.mkdir(exist_ok=True)
            os.chmod(node.dir, 0o700)
            node.config.write_text(self._config_text(node, profile, timing_overrides or {}))
        self._save()

    def _config_text(self, node: LabNode, profile: str, overrides: dict[str, float]) -> str:
        lines = [
            f'node = "{node.name}"',
            'data_dir = "data"',
            'secret_file = "../secret"',
            'log_file = "harepl.log"',
            "",
        ]
        for other in self.nodes:
            lines += ["[[nodes]]", f'name = "{other.name}"', 'address = "127.0.0.1"',
                      f"raft_port = {other.raft_port}", ""]
        lines += ["[api]", 'socket = "api.sock"', "", "[timing]", f'profile = "{profile}"']
        lines += [f"{k} = {v!r}" for k, v in sorted(overrides.items())]
        lines += ["", "[watchdog]", 'backend = "process"', ""]
        if self.state.get("fence"):
            lines += ["[fence]", 'config = "../fence.cfg"', ""]
        return "\n".join(lines)

    # --- fence devices (`harepl lab up --fence-device ipmi`) ----------------------------
    def _create_bmcs(self, kind: str, names: list[str]) -> None:
        """One real IPMI BMC (ipmi_sim) per node, and the fence.cfg (0600) that drives
        them with fence_ipmilan; the BMC's power-off is this lab's `kill` of the node."""
        from harepl.runtime.fence.bmc import LabBmc

        if kind != "ipmi":
            raise LabError(f"unknown fence device kind {kind!r} (ipmi)")
        password = secrets.token_urlsafe(12)
        ports = _free_udp_ports(len(names))
        self.state["fence"] = {"kind": kind, "ports": dict(zip(names, ports, strict=True))}
        text = "# harepl lab: one IPMI BMC (ipmi_sim) per node\n"
        for name, port in zip(names, ports, strict=True):
            bmc = LabBmc(self.dir, name, port, password)
            bmc.write()
            text += bmc.device_line()
        fd = os.open(self.dir / "fence.cfg", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)

    def bmcs(self) -> list[Any]:
        from harepl.runtime.fence.bmc import LabBmc

        ports = self.state.get("fence", {}).get("ports", {})
        return [LabBmc(self.dir, name, int(port), "") for name, port in sorted(ports.items())]

    def start_bmcs(self) -> None:
        for bmc in self.bmcs():
            bmc.start()

    # --- processes --------------------------------------------------------------------
    def running(self) -> list[str]:
        return [n.name for n in self.nodes if self._node_up(n.name)]

    def _node_up(self, name: str) -> bool:
        pid = self.pid(name)
        return pid is not None and procs.alive(pid) and procs.session_of(pid) == pid

    def start(self, name: str) -> int:
        node = self.node(name)
        if self._node_up(name):
            raise LabError(f"{name} is already running (pid {self.pid(name)})")
        # a stale socket from a killed daemon would make the new one fail to bind
        node.api_socket.unlink(missing_ok=True)
        env = dict(os.environ)
        env[procs.MARKER_ENV] = node.marker
        out = open(node.dir / "daemon.out", "ab")
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "harepl.runtime.daemon_cli", "--config", str(node.config)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                cwd=node.dir, env=env, start_new_session=True, close_fds=True,
            )
        finally:
            out.close()
        self.state.setdefault("pids", {})[name] = proc.pid
        self._save()
        return proc.pid

    def kill(self, name: str) -> None:
        """Power loss: SIGKILL of the node's whole session (and marked strays), then of its
        service cgroups (the daemon is dead by then: it can start nothing more)."""
        node = self.node(name)
        left = procs.kill_node(self.pid(name), node.marker)
        left += cgroup.kill_node_tree(node.name, node.marker)
        if left:
            raise LabError(f"{name}: processes survived SIGKILL: {left}")

    def pause(self, name: str) -> None:
        """Freeze the node's daemon (SIGSTOP). Its services and its process watchdog keep
        running — the watchdog must not stop with the daemon, like a hardware watchdog."""
        self._signal_daemon(name, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        self._signal_daemon(name, signal.SIGCONT)

    def _signal_daemon(self, name: str, sig: signal.Signals) -> None:
        pid = self.pid(name)
        if pid is None or not self._node_up(name):
            raise LabError(f"{name} is not running")
        os.kill(pid, sig)

    def shutdown(self, name: str, reboot: bool = False, timeout_s: float = 160.0) -> None:
        """A clean node shutdown (SIGUSR1) or reboot (SIGUSR2): the daemon applies the
        datacenter's shutdown policy and exits; then the rest of the node's session (its
        services, if the policy left any running) goes with it, as at power-off."""
        pid = self.pid(name)
        self._signal_daemon(name, signal.SIGUSR2 if reboot else signal.SIGUSR1)
        deadline = time.monotonic() + timeout_s
        while pid is not None and procs.alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if pid is not None and procs.alive(pid):
            raise LabError(f"{name}: the daemon did not finish its shutdown within {timeout_s:g}s")
        self.kill(name)
        if reboot:
            self.start(name)

    def reboot(self, name: str) -> None:
        self.shutdown(name, reboot=True)

    def restart(self, name: str) -> int:
        self.kill(name)
        return self.start(name)

    def down(self) -> list[str]:
        """Stop everything this lab started. Returns the names that were running."""
        was = self.running()
        for node in self.nodes:
            pid = self.pid(node.name)
            if pid is not None and procs.alive(pid):
                try:
                    os.kill(pid, signal.SIGCONT)  # a paused daemon would ignore nothing, but be tidy
                except ProcessLookupError:
                    pass
            left = procs.kill_node(pid if pid and procs.session_of(pid) == pid else None, node.marker)
            left += cgroup.kill_node_tree(node.name, node.marker)
            if left:
                raise LabError(f"{node.name}: processes survived SIGKILL: {left}")
        for bmc in self.bmcs():
            bmc.stop()
        self.state["pids"] = {}
        self._save()
        return was

    # --- health -----------------------------------------------------------------------
    def status(self, name: str, timeout_s: float = 2.0) -> dict[str, Any]:
        return get_json(self.node(name).api_socket, "/status", timeout_s=timeout_s)

    def wait_quorate(self, names: list[str] | None = None, timeout_s: float = 60.0) -> None:
        """Wait until every named node answers on its API and reports quorum. (A CRM
        master appears only once services are configured, as in Proxmox.)"""
        names = names or [n.name for n in self.nodes]
        deadline = time.monotonic() + timeout_s
        last = "no answer yet"
        while time.monotonic() < deadline:
            for name in names:
                if not self._node_up(name):
                    raise LabError(f"{name} died during start-up; see {self.node(name).dir / 'daemon.out'}")
            try:
                views = [self.status(n) for n in names]
                if all(v.get("quorate") for v in views):
                    return
                last = "; ".join(f"{n}: quorate={v.get('quorate')} master={v.get('master_node')}"
                                 for n, v in zip(names, views, strict=True))
            except ApiUnavailable as exc:
                last = str(exc)
            time.sleep(0.2)
        raise LabError(f"cluster not quorate after {timeout_s:g} s ({last})")

    # --- membership (`harepl lab add-node|remove-node`) ---------------------------------
    def _api(self, name: str) -> Any:
        from harepl.runtime.api.client import ApiClient

        return ApiClient(str(self.node(name).api_socket), timeout_s=30.0)

    def _rewrite_configs(self) -> None:
        """Every node's [[nodes]] = the lab's node list (what an operator does on every
        node after a change; the daemons read it at their next start)."""
        for node in self.nodes:
            if node.dir.exists():
                node.config.write_text(self._config_text(node, self.state["profile"], self.state.get("timing", {})))

    def add_node(self, timeout_s: float = 60.0) -> str:
        """Start one more daemon (config: every member plus itself) and add it to the
        running cluster through another node's API; returns its name."""
        from harepl.runtime.api.client import ApiClientError

        via = next(iter(self.running()), None)
        if via is None:
            raise LabError("no lab node is running; start the lab first")
        taken = {n.name for n in self.nodes}
        name = next(f"node{i}" for i in range(1, len(taken) + 2) if f"node{i}" not in taken)
        node = LabNode(name, _free_ports(1)[0], self.dir / name)
        if len(str(node.api_socket).encode()) > MAX_SOCKET_PATH:
            raise LabError(f"lab directory path too long for a Unix socket ({node.api_socket}); use a shorter --dir")
        if node.dir.exists():
            raise LabError(f"{node.dir} exists (a removed node's leftovers?); move it away first")
        self.state["nodes"].append({"name": name, "raft_port": node.raft_port})
        node.dir.mkdir()
        os.chmod(node.dir, 0o700)
        node.config.write_text(self._config_text(node, self.state["profile"], self.state.get("timing", {})))
        self._save()
        self.start(name)
        try:
            self._api(via).post("/cluster/members", {"node": name, "addr": f"127.0.0.1:{node.raft_port}"})
        except ApiClientError as exc:
            self.kill(name)
            self.state["nodes"] = [n for n in self.state["nodes"] if n["name"] != name]
            self.state["pids"].pop(name, None)
            self._save()
            raise LabError(f"adding {name} refused by {via}: {exc.message} (its directory {node.dir} is kept)") from None
        self._rewrite_configs()
        self.wait_quorate([name], timeout_s=timeout_s)
        return name

    def remove_node(self, name: str, timeout_s: float = 30.0) -> None:
        """Remove NODE from the running cluster (through another node's API), then power
        it off and drop it from the lab. The Raft leader is powered off first (it cannot
        be removed while it leads)."""
        from harepl.runtime.api.client import ApiClientError

        node = self.node(name)
        via = next((n for n in self.running() if n != name), None)
        if via is None:
            raise LabError(f"no other lab node is running to remove {name} through")
        api = self._api(via)
        try:
            if self._node_up(name) and api.get("/cluster/members").get("leader") == name:
                self.kill(name)
                deadline = time.monotonic() + timeout_s
                while api.get("/cluster/members").get("leader") in (None, name):
                    if time.monotonic() > deadline:
                        raise LabError(f"no new Raft leader within {timeout_s:g} s after powering off {name}")
                    time.sleep(0.2)
            api.delete(f"/cluster/members/{name}")
        except ApiClientError as exc:
            raise LabError(f"removing {name} refused by {via}: {exc.message}") from None
        self.kill(name)
        self.state["nodes"] = [n for n in self.state["nodes"] if n["name"] != name]
        self.state["pids"].pop(name, None)
        node.dir.rename(node.dir.with_name(f"{name}.removed"))
        self._rewrite_configs()
        self._save()

    def env_line(self, name: str) -> str:
        return f"export HAREPL_API={self.node(name).api_socket}"


def up(directory: Path, n_nodes: int, profile: str, timeout_s: float = 60.0,
       timing_overrides: dict[str, float] | None = None, fence_device: str | None = None) -> Lab:
    lab = Lab(directory)
    lab.create(n_nodes, profile, timing_overrides, fence_device)
    try:
        lab.start_bmcs()
        for node in lab.nodes:
            lab.start(node.name)
        lab.wait_quorate(timeout_s=timeout_s)
        if fence_device is not None:  # the devices are configured: use them, the watchdog as fallback
            lab._api(lab.nodes[0].name).request("PUT", "/cluster/options", {"ha": "fencing=both"})
    except BaseException:
        lab.down()
        raise
    return lab


def _free_udp_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _free_ports(n: int) -> list[int]:
    """Ports the kernel hands out now; held together so they are distinct."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
