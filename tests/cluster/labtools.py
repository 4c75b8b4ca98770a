"""Helpers for the cluster tests: a 3-node lab seen through ha-manager, the API and the
witness ledger."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harepl.runtime.apiprobe import ApiUnavailable, get_json
from harepl.runtime.lab import Lab
from tests.support.witness_check import read_ledger

ROOT = Path(__file__).resolve().parents[2]
WITNESS = ROOT / "tests" / "support" / "witness.py"
BIN = Path(sys.executable).parent
# generous bounds against hangs only; speed is measured in bench/, never asserted here
WAIT_S = 90.0


class Cluster:
    def __init__(self, lab: Lab, witness_dir: Path) -> None:
        self.lab = lab
        self.witness_dir = witness_dir
        self.ledger = witness_dir / "ledger.jsonl"

    # --- the operator's view ------------------------------------------------------------
    def ha(self, node: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = dict(os.environ, HAREPL_API=str(self.lab.node(node).api_socket))
        proc = subprocess.run([str(BIN / "ha-manager"), *args], env=env, capture_output=True, text=True,
                              timeout=60)
        if check and proc.returncode != 0:
            raise AssertionError(f"ha-manager {' '.join(args)} on {node}: rc {proc.returncode}: "
                                 f"{proc.stdout}{proc.stderr}")
        return proc

    def manager_status(self, node: str) -> dict[str, Any]:
        return get_json(self.lab.node(node).api_socket, "/status/manager_status")  # type: ignore[no-any-return]

    def service(self, node: str, sid: str) -> dict[str, Any]:
        ms = self.manager_status(node)["manager_status"]
        return ms.get("service_status", {}).get(sid, {})  # type: ignore[no-any-return]

    # --- witness services ---------------------------------------------------------------
    def witness_command(self, sid: str) -> str:
        return (f"{sys.executable} {WITNESS} --name {sid} --ledger {self.ledger} "
                f"--lock-dir {self.witness_dir / 'locks'}")

    def add_exec(self, via: str, sid: str, node: str, *extra: str) -> None:
        self.ha(via, "add", sid, "--node", node, "--command", self.witness_command(sid), *extra)

    def events(self, sid: str | None = None) -> list[dict[str, Any]]:
        return [e for e in read_ledger(self.ledger) if sid is None or e.get("sid") == sid]

    def running_on(self, sid: str) -> str | None:
        """The node whose witness instance of `sid` started last and has not stopped
        (a SIGKILLed instance writes no stop: check its pid too)."""
        current: dict[str, Any] | None = None
        for e in self.events(sid):
            if e["event"] == "start":
                current = e
            elif e["event"] == "stop" and current is not None and e["pid"] == current["pid"]:
                current = None
        if current is None or not _alive(current["pid"]):
            return None
        return str(current["node"])

    def wait_running(self, sid: str, node: str | None = None, not_on: str | None = None,
                     via: str = "node1") -> str:
        """Wait until the witness of `sid` runs (on `node`, or anywhere but `not_on`) and
        the CRM reports it started there."""
        def ok() -> str | None:
            where = self.running_on(sid)
            if where is None or (node and where != node) or (not_on and where == not_on):
                return None
            try:
                sd = self.service(via, sid)
            except ApiUnavailable:
                return None
            return where if sd.get("state") == "started" and sd.get("node") == where else None
        return wait_for(ok, f"{sid} running on {node or 'a node other than ' + str(not_on)}")

    def log(self, node: str) -> str:
        return self.lab.node(node).log.read_text(errors="replace")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def wait_for(fn: Callable[[], Any], what: str, timeout_s: float = WAIT_S, every_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out waiting for {what}")
