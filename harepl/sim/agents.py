"""The simulator's resource agents (vm:, ct:, fa:) and the agent faults they carry out.

Agent faults (`agent SID FAULT [COUNT]` in a cmdlist, Hardware.agent_faults) each change
the next matching call of the service's agent, on whatever node it runs:
  - start-fail: the start does nothing (the service does not run; the LRM sees ERROR);
  - start-hang: the start exceeds its timeout and is given up (with asynchronous workers
    the job reports only HANG_POLLS polls later; the service does not run);
  - stop-fail: the stop does nothing (the service keeps running: stop not confirmed);
  - stop-hang: the stop exceeds its timeout: the agent gives up while the service still
    runs (stop not confirmed), and the service ends by itself LINGER_ROUNDS rounds later;
  - die-after-start: the start works, then the service dies at the next round start (the
    monitor reports it to the LRM through take_service_deaths).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harepl.sim.hardware import InvariantBroken

if TYPE_CHECKING:
    from harepl.sim.env import SimEnv

AGENT_FAULTS = ("start-fail", "start-hang", "stop-fail", "stop-hang", "die-after-start")
HANG_POLLS = 2  # a hung job reports this many polls later (asynchronous workers only)
LINGER_ROUNDS = 3  # a hung stop: the service ends by itself this many rounds later


class SimResource:
    """vm:/ct: resources: start/stop/migrate flip the hardware's running table."""

    def __init__(self, env: SimEnv) -> None:
        self.env = env
        self.hw = env.hw
        self.stop_fault = False  # the last shutdown() met an injected stop fault

    def _lock(self, sid: str) -> str | None:
        cfg = self.hw.service_config.get(sid)
        return cfg.get("lock") if cfg else None

    def _take_fault(self, sid: str, call: str) -> str | None:
        faults = self.hw.agent_faults.get(sid)
        if not faults:
            return None
        for fault in faults:
            if fault.startswith(call) or (call == "start" and fault == "die-after-start"):
                faults.remove(fault)
                if not faults:
                    del self.hw.agent_faults[sid]
                return fault
        return None

    def check_running(self, sid: str) -> bool:
        running = bool(self.hw.running[self.env.node].get(sid))
        if not running:
            self.hw.stop_confirmed(self.env.node, sid)
        return running

    def start(self, sid: str) -> None:
        lock = self._lock(sid)
        if lock:
            self.env.log("err", f"service '{sid}' locked ({lock}), unable to start!")
            return
        if self.env.sim.profile.policy.start_needs_lease and not self.env.node_lease_valid():
            raise InvariantBroken(f"service '{sid}' started on '{self.env.node}' without a valid node lease")
        fault = self._take_fault(sid, "start")
        if fault == "start-fail":
            self.env.log("err", f"agent: start of {sid} failed (injected fault)")
            return
        if fault == "start-hang":
            self.env.log("err", f"agent: start of {sid} exceeded its timeout - given up (injected fault)")
            self.env.hang(HANG_POLLS)
            return
        self.env.sleep(2)
        self.hw.set_running(self.env.node, sid, True)
        if fault == "die-after-start":
            self.hw.dying.append((self.env.node, sid))

    def shutdown(self, sid: str, timeout_s: float | None) -> None:
        lock = self._lock(sid)
        if lock:
            self.env.log("err", f"service '{sid}' locked ({lock}), unable to shutdown!")
            self.hw.stop_not_confirmed(self.env.node, sid)
            return
        self.stop_fault = False
        if self.hw.running[self.env.node].get(sid):
            fault = self._take_fault(sid, "stop")
            self.stop_fault = fault is not None
            if fault == "stop-fail":
                self.env.log("err", f"agent: stop of {sid} failed (injected fault)")
                self.hw.stop_not_confirmed(self.env.node, sid)
                return
            if fault == "stop-hang":
                self.env.log("err", f"agent: stop of {sid} exceeded its timeout - it still runs (injected fault)")
                self.hw.lingering[(self.env.node, sid)] = LINGER_ROUNDS
                self.hw.stop_not_confirmed(self.env.node, sid)
                self.env.hang(HANG_POLLS)
                return
        self.env.sleep(2)
        self.hw.set_running(self.env.node, sid, False)
        self.hw.stop_confirmed(self.env.node, sid)  # the agent saw it end

    def migrate(self, sid: str, target: str, online: bool) -> bool:
        env = self.env
        cmd = "migrate" if online else "relocate"
        env.log("info", f"service {sid} - start {cmd} to node '{target}'")
        lock = self._lock(sid)
        if lock:
            env.log("err", f"service '{sid}' locked ({lock}), unable to {cmd}!")
            return False
        if not self.hw.quorate_for(env.node):
            env.log("err", f"service '{sid}' not moved - the new location cannot be committed (not quorate)")
            return False
        if not online and self.check_running(sid):
            env.log("info", f"stopping service {sid} (relocate)")
            self.shutdown(sid, None)
            if self.stop_fault:
                env.log("err", f"service '{sid}' not moved - its stop failed")
                return False
            env.log("info", f"service status {sid} stopped")
        else:
            env.sleep(2)
        self.hw.change_service_location(sid, env.node, target)
        env.log("info", f"service {sid} - end {cmd} to node '{target}'")
        self.hw.set_running(env.node, sid, False)
        self.hw.stop_confirmed(env.node, sid)
        return True

    def remove_locks(self, sid: str, locks: list[str], fenced_node: str) -> str | None:
        cfg = self.hw.raw_service_config.get(sid)
        if cfg and cfg.get("lock") in locks:
            lock = str(cfg["lock"])
            raw = dict(cfg)
            raw.pop("lock")
            self.hw.delete_service(sid)
            self.hw.add_service(sid, raw)
            return lock
        return None


def decode_fail_id(sid: str) -> tuple[int, int, int, str | None]:
    """fa:ABCDEF -> (start failures B, migrate failures C, cannot stop D, only on node F).

    As Proxmox's VirtFail: A tells resources apart, B/C how many tries fail before
    start/migrate work, D != 0 means stop never works, E is 'exists'; a 6th digit F != 0
    limits the failures to node F (fa:120001 fails twice to start, but only on node1).
    """
    d = [int(c) if c.isdigit() else 0 for c in sid.split(":", 1)[1]]
    get = lambda i: d[i] if len(d) > i else 0  # noqa: E731
    node = f"node{get(5)}" if get(5) else None
    return get(1), get(2), get(3), node


class FailingResource(SimResource):
    """fa: resources whose id digits encode how often start/migrate fail."""

    def start(self, sid: str) -> None:
        fails, _, _, only_on = decode_fail_id(sid)
        if only_on is not None and only_on != self.env.node:
            fails = 0
        tries = self.hw.fail_tries["start"].get(sid, 0) + 1
        self.hw.fail_tries["start"][sid] = tries
        if fails >= tries:
            return
        self.hw.fail_tries["start"][sid] = 0
        super().start(sid)

    def shutdown(self, sid: str, timeout_s: float | None) -> None:
        if decode_fail_id(sid)[2]:
            self.hw.stop_not_confirmed(self.env.node, sid)
            return
        super().shutdown(sid, timeout_s)

    def migrate(self, sid: str, target: str, online: bool) -> bool:
        _, fails, _, only_on = decode_fail_id(sid)
        if only_on is not None and only_on != self.env.node:
            fails = 0
        tries = self.hw.fail_tries["migrate"].get(sid, 0) + 1
        self.hw.fail_tries["migrate"][sid] = tries
        if fails >= tries:
            return False
        self.hw.fail_tries["migrate"][sid] = 0
        return super().migrate(sid, target, online)
