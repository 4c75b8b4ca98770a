"""`harepl demo` (`make demo`): a real 3-node cluster on 127.0.0.1, a node killed, the
failover shown with the real `ha-manager status`, then a clean teardown.

Everything is real: three daemons (Raft on loopback, CRM, LRM, process watchdogs), the
exec agent running small shell services, and the `ha-manager` CLI talking to the API.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

from harepl.runtime import procs
from harepl.runtime.apiprobe import ApiUnavailable, get_json
from harepl.runtime.lab import Lab, LabError, up

SERVICES = {"exec:web": "node2", "exec:db": "node2", "exec:cache": "node3"}
VICTIM = "node2"


def _ha(lab: Lab, node: str, *args: str) -> str:
    env = dict(os.environ, HAREPL_API=str(lab.node(node).api_socket))
    exe = Path(sys.executable).parent / "ha-manager"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "harepl.cli.ha_manager"]
    proc = subprocess.run([*cmd, *args], env=env, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        raise click.ClickException(f"ha-manager {' '.join(args)}: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def _services(lab: Lab, node: str) -> dict[str, dict[str, object]]:
    ms = get_json(lab.node(node).api_socket, "/status/manager_status")["manager_status"]
    return ms.get("service_status", {})  # type: ignore[no-any-return]


def _wait(lab: Lab, via: str, ok, what: str, timeout_s: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if ok(_services(lab, via)):
                return
        except ApiUnavailable:
            pass
        time.sleep(0.1)
    raise click.ClickException(f"demo: timed out waiting for {what}")


def _all_running(ss: dict[str, dict[str, object]], avoid: str | None = None) -> bool:
    return all(
        sid in ss and ss[sid].get("state") == "started" and ss[sid].get("running")
        and ss[sid].get("node") != avoid
        for sid in SERVICES
    )


def _show(title: str, text: str) -> None:
    click.secho(f"\n$ ha-manager status    # {title}", bold=True)
    click.echo(text.rstrip())


@click.command()
@click.option("--keep", is_flag=True, help="Leave the lab directory (logs) behind.")
def demo(keep: bool) -> None:
    """A real 3-node cluster: services, a node killed, failover, teardown."""
    lab_dir = Path(tempfile.mkdtemp(prefix="harepl-demo-", dir="/tmp"))
    t0 = time.monotonic()
    lab: Lab | None = None
    try:
        click.secho("# harepl demo: 3 node daemons on 127.0.0.1 (profile 'fast': loop 0.5 s, "
                    "lease 2 s, watchdog 3 s, lease timeout 7 s)", bold=True)
        try:
            lab = up(lab_dir, 3, "fast", timeout_s=60)
        except LabError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"lab up in {time.monotonic() - t0:.1f} s: {', '.join(n.name for n in lab.nodes)} "
                   f"(logs in {lab_dir})")
        for sid, node in SERVICES.items():
            name = sid.split(":", 1)[1]
            beat = lab_dir / f"{name}.beat"
            cmd = f"while :; do echo \"$HAREPL_NODE $(date +%T)\" >> {beat}; sleep 1; done"
            click.echo(f"$ ha-manager add {sid} --node {node} --command '...'")
            _ha(lab, "node1", "add", sid, "--node", node, "--command", cmd)
        _wait(lab, "node1", _all_running, "the services to start")
        _show("every service started where asked", _ha(lab, "node1", "status"))

        click.secho(f"\n# power loss on {VICTIM}: SIGKILL of its whole session (daemon, watchdog, "
                    "services)", bold=True)
        t_kill = time.monotonic()
        lab.kill(VICTIM)
        seen: set[tuple[str, str]] = set()

        def progress(ss: dict[str, dict[str, object]]) -> bool:
            for sid in SERVICES:
                key = (sid, f"{ss.get(sid, {}).get('state')} on {ss.get(sid, {}).get('node')}")
                if key not in seen:
                    seen.add(key)
                    click.echo(f"  +{time.monotonic() - t_kill:5.1f} s  {sid}: {key[1]}")
            return _all_running(ss, avoid=VICTIM)

        _wait(lab, "node1", progress, f"the services of {VICTIM} to be recovered")
        click.echo(f"every service of {VICTIM} runs elsewhere {time.monotonic() - t_kill:.1f} s after the kill "
                   f"(bound: lease_timeout 7 s + a loop + agent start)")
        _show(f"after {VICTIM} died", _ha(lab, "node1", "status"))
    finally:
        if lab is not None:
            lab.down()
        left = [pid for n in (lab.nodes if lab else []) for pid in procs.node_pids(None, n.marker)]
        if keep:
            click.echo(f"\nlab directory kept: {lab_dir}")
        else:
            shutil.rmtree(lab_dir, ignore_errors=True)
        click.secho(f"\n# teardown: lab down, {len(left)} processes left; demo took "
                    f"{time.monotonic() - t0:.1f} s", bold=True)


if __name__ == "__main__":
    demo()
