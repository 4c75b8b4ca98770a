"""`harepl lab`: a real 3-node lab comes up quorate, nodes restart, `down` leaves nothing."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from harepl.runtime import procs
from harepl.runtime.lab import Lab
from harepl.runtime.lab_cli import lab

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(180)]


def run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(lab, list(args))
    return res.exit_code, res.output


def _eventually(check, timeout_s: float = 10.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def test_lab_lifecycle_leaves_no_process_behind() -> None:
    d = tempfile.mkdtemp(prefix="hl-", dir="/tmp")
    code, out = run("up", "--nodes", "3", "--dir", d, "--profile", "fast")
    try:
        assert code == 0, out
        assert f"export HAREPL_API={d}/node1/api.sock" in out
        code, out = run("env", "node2", "--dir", d)
        assert (code, out.strip()) == (0, f"export HAREPL_API={d}/node2/api.sock")
        lab_ = Lab(Path(d)).load()
        assert sorted(lab_.running()) == ["node1", "node2", "node3"]
        old = lab_.pid("node3")
        code, out = run("restart", "node3", "--dir", d)
        assert code == 0, out
        lab_ = Lab(Path(d)).load()
        assert lab_.pid("node3") != old and not procs.alive(old)  # type: ignore[arg-type]
        lab_.wait_quorate(timeout_s=60)
        pid1 = lab_.pid("node1")
        assert pid1 is not None
        code, out = run("pause", "node1", "--dir", d)
        assert code == 0, out
        assert _eventually(lambda: procs.state_of(pid1) == "T")  # signal delivery is asynchronous
        code, out = run("resume", "node1", "--dir", d)
        assert code == 0, out
        assert _eventually(lambda: procs.state_of(pid1) != "T")
    finally:
        code, out = run("down", "--dir", d)
    assert code == 0, out
    for node in ("node1", "node2", "node3"):
        assert procs.node_pids(None, os.path.join(d, node)) == []
    code, out = run("status", "--dir", d)
    assert code == 0 and out.count("stopped") == 3, out
    shutil.rmtree(d, ignore_errors=True)


def test_lab_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    code, out = run("kill", "node1", "--dir", str(tmp_path))
    assert code == 2 and out.strip() == f"harepl lab: no lab in {tmp_path} (run `harepl lab up --dir {tmp_path}` first)"
    (tmp_path / "lab.json").write_text('{"profile": "fast", "nodes": [{"name": "node1", "raft_port": 1}], "pids": {}}')
    code, out = run("kill", "node9", "--dir", str(tmp_path))
    assert code == 2 and len(out.strip().splitlines()) == 1 and "no node 'node9'" in out
    code, out = run("resume", "node1", "--dir", str(tmp_path))
    assert code == 2 and "node1 is not running" in out
