"""A real IPMI-over-LAN BMC for a lab node: OpenIPMI's `ipmi_sim` (Debian `openipmi`) on
127.0.0.1, driven by `fence_ipmilan` (Debian `fence-agents`) like a server's BMC.

    bmc = LabBmc(lab_dir, node, port, password); bmc.write(); bmc.start(); bmc.stop()

Its chassis power commands run `chassis.sh` (written here), which keeps the node's power
state in `DIR/bmc-NODE/power` and appends every command to `DIR/bmc-NODE/bmc.log` with a
monotonic and a wall-clock time — the BMC's own log. `set power 0` is the lab's one
power-off of the node: `python -m harepl.runtime.fence.bmc off LAB_DIR NODE` runs
`Lab.kill` (the node's whole session, marked strays and service cgroups). `set power 1`
starts the node's daemon afresh (`Lab.start`): a powered-off node comes back only through
a fresh start, with a fresh process and no lease.

Configuration as verified on this machine (../shared/notes/ipmi-sim.md): cipher suite 3
(`lanplus=1 cipher=3`; without it every call waits ~14 s), `-n` (no console).
`power_wait=0`: fence_ipmilan otherwise sleeps 2 s after its `off` before it polls the
power state; this BMC reports off only once the node's tree is dead, so the poll is the
confirmation (and harepl's own `status` after it).
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

IPMI_SIM = "/usr/bin/ipmi_sim"
USER = "admin"


class LabBmc:
    def __init__(self, lab_dir: Path, node: str, port: int, password: str) -> None:
        self.lab_dir = Path(lab_dir)
        self.node = node
        self.port = port
        self.password = password
        self.dir = self.lab_dir / f"bmc-{node}"

    @property
    def log(self) -> Path:
        return self.dir / "bmc.log"

    @property
    def pid_file(self) -> Path:
        return self.dir / "ipmi_sim.pid"

    def device_line(self, timeout_s: float = 20.0) -> str:
        """fence.cfg lines (Proxmox's shape) for this node's BMC."""
        return (f"device bmc_{self.node} fence_ipmilan ip=127.0.0.1 ipport={self.port} username={USER} "
                f"password={self.password} lanplus=1 cipher=3 power_wait=0 harepl_timeout={timeout_s:g}\n"
                f"connect bmc_{self.node} node={self.node}\n")

    def write(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        (self.dir / "power").write_text("1\n")
        (self.dir / "state").mkdir(exist_ok=True)
        lan = f"""name "{self.node}"
set_working_mc 0x20
  startlan 1
    addr 127.0.0.1 {self.port}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "{self.dir / 'chassis.sh'}"
user 2 true  "{USER}" "{self.password}" admin 10 none md2 md5 straight
"""
        fd = os.open(self.dir / "lan.conf", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(lan)
        (self.dir / "emu.cmd").write_text("mc_setbmc 0x20\n"
                                          "mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n"
                                          "mc_enable 0x20\n")
        py = shlex.quote(sys.executable)
        root = shlex.quote(str(Path(__file__).resolve().parents[3]))
        d, lab, node = shlex.quote(str(self.dir)), shlex.quote(str(self.lab_dir)), shlex.quote(self.node)
        script = f"""#!/bin/sh
# {self.node}'s BMC chassis control (called by ipmi_sim): get power | set power 0|1
d={d}
stamp() {{ echo "$(cut -d' ' -f1 /proc/uptime) $(date +%s.%N) $*" >> "$d/bmc.log"; }}
op=$1; shift
case "$op" in
  get) for p in "$@"; do case $p in power) echo "power:$(cat "$d/power")";; boot) echo "boot:none";; esac; done;;
  set) while [ $# -gt 1 ]; do
         if [ "$1" = power ]; then
           stamp "set power $2 (was $(cat "$d/power"))"
           if [ "$2" = 0 ]; then
             # the power reads off only once the node's whole tree is dead
             PYTHONPATH={root} {py} -m harepl.runtime.fence.bmc off {lab} {node} >> "$d/bmc.log" 2>&1
             echo 0 > "$d/power"
             stamp "power off done: node {self.node} killed"
           else
             echo 1 > "$d/power"
             PYTHONPATH={root} {py} -m harepl.runtime.fence.bmc on {lab} {node} >> "$d/bmc.log" 2>&1
             stamp "power on done"
           fi
         fi
         shift 2
       done;;
esac
"""
        p = self.dir / "chassis.sh"
        p.write_text(script)
        os.chmod(p, 0o700)

    def start(self, wait_s: float = 10.0) -> int:
        env = {k: v for k, v in os.environ.items() if k != "HAREPL_LAB_NODE"}  # not one of the node's processes
        with open(self.dir / "ipmi_sim.out", "ab") as out:
            proc = subprocess.Popen([IPMI_SIM, "-c", str(self.dir / "lan.conf"), "-f", str(self.dir / "emu.cmd"),
                                     "-n", "-s", str(self.dir / "state")], stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True, close_fds=True, env=env,
                                    cwd=self.dir)
        self.pid_file.write_text(f"{proc.pid}\n")
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"ipmi_sim for {self.node} exited ({proc.returncode}); see {self.dir}/ipmi_sim.out")
            if _udp_bound(self.port):
                return proc.pid
            time.sleep(0.05)
        proc.kill()
        raise RuntimeError(f"ipmi_sim for {self.node} did not listen on 127.0.0.1:{self.port}")

    def stop(self) -> None:
        try:
            pid = int(self.pid_file.read_text())
        except (OSError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                os.kill(pid, 0)
                time.sleep(0.05)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.pid_file.unlink(missing_ok=True)

    def power_log(self) -> list[tuple[float, float, str]]:
        """(uptime s, wall s, text) of each chassis power command."""
        out = []
        for line in self.log.read_text().splitlines() if self.log.exists() else []:
            parts = line.split(" ", 2)
            try:
                out.append((float(parts[0]), float(parts[1]), parts[2]))
            except (ValueError, IndexError):
                continue
        return out


def _udp_bound(port: int) -> bool:
    hexport = f":{port:04X}"
    try:
        with open("/proc/net/udp") as fh:
            return any(line.split()[1].endswith(hexport) for line in fh.readlines()[1:])
    except OSError:
        return False


def main(argv: list[str]) -> int:
    """chassis.sh's power commands: `off LAB_DIR NODE` kills the node's whole tree,
    `on LAB_DIR NODE` starts its daemon afresh."""
    from harepl.runtime.lab import Lab, LabError

    action, lab_dir, node = argv
    try:
        lab = Lab(Path(lab_dir)).load()
        if action == "off":
            lab.kill(node)
        elif action == "on" and node not in lab.running():
            lab.start(node)
    except LabError as exc:
        print(f"bmc: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
