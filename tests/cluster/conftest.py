"""Real 3-node clusters on 127.0.0.1 (`harepl lab`, `fast` profile) for end-to-end tests.

Every test service is the witness (`tests/support/witness.py`): it holds an exclusive
flock named after the service and appends start/stop to one ledger shared by the whole
session; a second instance records a violation. The session ends by asserting that the
ledger of every test holds zero violations.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harepl.runtime.apiprobe import ApiUnavailable, get_json
from harepl.runtime.lab import Lab, up
from tests.support.witness_check import read_ledger, violations

ROOT = Path(__file__).resolve().parents[2]
WITNESS = ROOT / "tests" / "support" / "witness.py"
BIN = Path(sys.executable).parent
# generous bounds against hangs only; speed is measured in bench/, never asserted here
WAIT_S = 90.0

pytestmark = pytest.mark.cluster


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


@pytest.fixture(scope="session")
def witness_root() -> Iterator[Path]:
    """One directory for every ledger of the session; zero violations asserted at the end."""
    root = Path(tempfile.mkdtemp(prefix="hw-", dir="/tmp"))
    yield root
    bad = []
    for ledger in sorted(root.glob("*/ledger.jsonl")):
        bad += violations(ledger)
    shutil.rmtree(root, ignore_errors=True)
    assert not bad, f"witness violations across the cluster suite: {json.dumps(bad)}"


@pytest.fixture
def cluster(witness_root: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    # a test may ask for other timings: @pytest.mark.timing(watchdog_s=6, ...)
    marker = request.node.get_closest_marker("timing")
    overrides = dict(marker.kwargs) if marker else {}
    # short paths: AF_UNIX socket paths are limited to 107 bytes
    lab_dir = Path(tempfile.mkdtemp(prefix="hl-", dir="/tmp"))
    wdir = witness_root / request.node.name[:40]
    (wdir / "locks").mkdir(parents=True)
    lab = up(lab_dir, 3, "fast", timeout_s=60, timing_overrides=overrides)
    c = Cluster(lab, wdir)
    try:
        yield c
    finally:
        lab.down()
        if request.node.rep_call.failed if hasattr(request.node, "rep_call") else False:
            print(f"lab kept for inspection: {lab_dir}")
        else:
            shutil.rmtree(lab_dir, ignore_errors=True)
        assert not violations(c.ledger), f"witness violations: {violations(c.ledger)}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "timing(**overrides): lab timing overrides for the cluster fixture")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
