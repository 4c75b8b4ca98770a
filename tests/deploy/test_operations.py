"""docs/operations.md, run: three nodes installed from the package, each a fresh root made
from dist/harepl-rootfs.tar (tests/deploy/conftest.py), entered with chroot, with its
own address on the loopback network (node1 127.0.0.1, node2 127.0.0.2, node3 127.0.0.3,
Raft port 5405 each). Every command of the guide that a section names as tested runs
here, in the guide's order, with the guide's paths; where the guide says `systemctl
start harepl`, this test runs the unit's ExecStart line (no systemd inside a chroot),
and `scp` is a copy between the roots.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harepl.runtime import procs
from tests.deploy.conftest import CHROOT_ENV, ROOT, inside, sh

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]

NODES = {"node1": "127.0.0.1", "node2": "127.0.0.2", "node3": "127.0.0.3"}
DOC = ROOT / "docs" / "operations.md"
UNIT_EXEC = ("/usr/bin/harepl", "daemon", "--config", "/etc/harepl/harepl.toml")


def doc_block(tag: str) -> str:
    """The guide's code block that follows the marker `<!-- test: TAG -->`."""
    text = DOC.read_text()
    m = re.search(rf"<!-- test: {re.escape(tag)} -->\s*```[a-z]*\n(.*?)```", text, re.S)
    assert m, f"docs/operations.md has no block marked {tag!r}"
    # systemctl lines are what Cluster.stop/start stand for (no systemd in a chroot)
    return "".join(line for line in m.group(1).splitlines(keepends=True) if not line.startswith("systemctl "))


class Cluster:
    def __init__(self, roots: dict[str, Path]) -> None:
        self.roots = roots
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def sh(self, node: str, script: str, check: bool = True, timeout: float = 120,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """A shell on `node` (/bin/sh -c SCRIPT in its root)."""
        return inside(self.roots[node], "/bin/sh", "-ec", script, check=check, timeout=timeout, env=env)

    def start(self, node: str) -> None:
        """`systemctl start harepl`: the unit's ExecStart, its output kept as the journal."""
        root = self.roots[node]
        journal = open(root / "var/log/harepl/journal.txt", "ab")
        env = {**CHROOT_ENV, procs.MARKER_ENV: f"harepl-ops-test-{node}"}
        self.procs[node] = subprocess.Popen(["chroot", str(root), *UNIT_EXEC], stdin=subprocess.DEVNULL,
                                            stdout=journal, stderr=subprocess.STDOUT, env=env)
        journal.close()

    def stop(self, node: str) -> None:
        """`systemctl stop harepl`: SIGTERM (KillMode=process), services keep running."""
        p = self.procs.pop(node)
        p.send_signal(signal.SIGTERM)
        assert p.wait(60) == 0

    def power_off(self, node: str) -> None:
        """Power loss: the daemon's session and everything it started, SIGKILL."""
        p = self.procs.pop(node, None)
        if p is not None:
            procs.kill_node(p.pid, f"harepl-ops-test-{node}")  # the daemon leads its session
            p.wait(10)

    def wait(self, node: str, pattern: str, cmd: str = "ha-manager status", timeout_s: float = 90.0) -> str:
        deadline = time.monotonic() + timeout_s
        out = ""
        while time.monotonic() < deadline:
            r = self.sh(node, cmd, check=False)
            out = r.stdout + r.stderr
            if re.search(pattern, out, re.M):
                return out
            time.sleep(0.5)
        raise AssertionError(f"{node}: {cmd!r} never matched {pattern!r}; last:\n{out}")


@pytest.fixture(scope="module")
def cluster(new_root: Callable[[str], Path]) -> Iterator[Cluster]:
    c = Cluster({name: new_root(name) for name in NODES})
    yield c
    for node in list(c.procs):
        c.power_off(node)


def test_three_nodes_from_the_package(cluster: Cluster, built: Path) -> None:
    c = cluster
    # -- install: every root was made by `apt-get install ./harepl_*.deb` (deploy/build-rootfs)
    for node in NODES:
        assert c.sh(node, "harepl --version").stdout.startswith("harepl, version")

    # -- the cluster secret, made once, copied to every node
    c.sh("node1", doc_block("secret"))
    secret = c.roots["node1"] / "etc/harepl/secret"
    assert secret.stat().st_mode & 0o777 == 0o600 and len(secret.read_bytes().strip()) >= 16
    for node in ("node2", "node3"):
        sh("install", "-m", "0600", str(secret), str(c.roots[node] / "etc/harepl/secret"))  # stands for scp -p

    # -- the config: the package's default lists node1..node3 at 10.0.0.1-3; here the
    #    addresses are 127.0.0.1-3 (the guide's "edit [[nodes]]" step), then the guide's sed
    for node in NODES:
        cfg = c.roots[node] / "etc/harepl/harepl.toml"
        cfg.write_text(cfg.read_text().replace('"10.0.0.', '"127.0.0.'))
        c.sh(node, doc_block("node-name").replace("node2", node))
        r = c.sh(node, doc_block("check"))
        assert r.stdout.startswith(f"config OK: node {node}, 3 members, profile default"), r.stdout

    # -- firewall: the guide's ruleset parses (nft -c: checked, not applied)
    nft = subprocess.run(["nft", "-c", "-f", "-"], input=doc_block("nftables"), capture_output=True, text=True)
    assert nft.returncode == 0, nft.stderr

    # -- start every node; the cluster forms
    for node in NODES:
        c.start(node)
    out = c.wait("node1", r"^quorate: yes", cmd="harepl cluster members")
    assert len(re.findall(r"^node\d .* yes +yes +yes", out, re.M)) == 3, out
    c.sh("node1", "ha-manager add exec:sleeper --command 'sleep 86401'")
    c.wait("node3", r"service exec:sleeper \(node\d, started\)")

    # -- logs: the daemon's own log file
    log = (c.roots["node1"] / "var/log/harepl/harepl.log").read_text()
    assert "harepl-daemon[" in log and "starting: node node1" in log

    # -- the TCP API with a token, kept on 127.0.0.1
    c.sh("node1", doc_block("api-token"))
    cfg = c.roots["node1"] / "etc/harepl/harepl.toml"
    text = cfg.read_text()
    assert '# tcp = "127.0.0.1:8007"' in text
    cfg.write_text(text.replace('# tcp = "127.0.0.1:8007"', 'tcp = "127.0.0.1:8007"')
                   .replace('# token_file = "/etc/harepl/api-token"', 'token_file = "/etc/harepl/api-token"'))
    c.stop("node1")
    c.start("node1")
    r = c.wait("node1", r"^quorum OK", cmd=doc_block("api-use"))
    assert "exec:sleeper" in r
    r = c.sh("node1", "HAREPL_API=http://127.0.0.1:8007 ha-manager status", check=False)
    assert r.returncode != 0 and r.stderr.count("\n") == 1, r

    # -- backup: node1's store, its daemon stopped (services keep running, the other two
    #    keep quorum); a change made after the backup
    c.stop("node1")
    c.sh("node1", doc_block("backup"))
    c.start("node1")
    c.wait("node1", r"^quorate: yes", cmd="harepl cluster members")
    c.sh("node1", "ha-manager add exec:later --command 'sleep 86402'")
    c.wait("node1", r"service exec:later \(node\d, started\)")
    # -- the whole cluster lost (every node's power and data_dir); the one backup restored on
    #    every node: it comes back as it was at the backup (exec:later is gone)
    for node in NODES:
        c.power_off(node)
    for node in NODES:
        if node != "node1":  # stands for scp -p
            sh("install", "-m", "0600", str(c.roots["node1"] / "root/harepl-store.tgz"),
               str(c.roots[node] / "root/harepl-store.tgz"))
        c.sh(node, doc_block("restore"))
    for node in NODES:
        c.start(node)
    c.wait("node1", r"^quorate: yes", cmd="harepl cluster members")
    out = c.wait("node2", r"service exec:sleeper \(node\d, started\)")
    assert "exec:later" not in out, out
    for node in NODES:
        assert c.procs[node].poll() is None, f"{node} exited {c.procs[node].returncode}"

    # -- rolling upgrade: one node at a time, each back in the cluster before the next
    for node in NODES:
        sh("cp", str(built), str(c.roots[node] / "tmp/harepl.deb"))
        c.sh(node, "dpkg -i /tmp/harepl.deb >/dev/null", timeout=300)  # apt-get install ./harepl_NEW.deb
        c.stop(node)
        c.start(node)
        c.wait(node, r"^quorate: yes", cmd="harepl cluster members")
        c.wait(node, r"service exec:sleeper \(node\d, started\)")

    # -- quorum loss: two nodes lose power; the third says so; they come back
    c.power_off("node2")
    c.power_off("node3")
    c.wait("node1", r"^quorum No quorum on node 'node1'!")
    c.wait("node1", r"^quorate: no", cmd="harepl cluster members")
    c.start("node2")
    c.start("node3")
    c.wait("node1", r"^quorate: yes", cmd="harepl cluster members")
    c.wait("node1", r"service exec:sleeper \(node\d, started\)")

    # -- where the logs went: the daemon's file, and its standard error (the journal)
    for node in NODES:
        log = (c.roots[node] / "var/log/harepl/harepl.log").read_text()
        assert log.count(f"starting: node {node}") >= 2, node
    assert os.path.getsize(c.roots["node1"] / "var/log/harepl/journal.txt") >= 0
