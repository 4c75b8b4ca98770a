"""watchdog-mux against a TEST DOUBLE device: /dev/watchdog does not exist in this container
(no softdog module can be loaded), so the mux drives a regular file and we read back what it
wrote (keep-alive bytes, the magic 'V'). The mux process, its socket and its clients are real."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from harepl.runtime.watchdog import MuxWatchdog, WatchdogError, choose_backend, open_watchdog
from tests.support import wait_until

DEVICE_TIMEOUT_S = 1.0
FEED_INTERVAL_S = 0.1


class Mux:
    def __init__(self, tmp_path):
        self.device = tmp_path / "watchdog.double"
        self.device.write_bytes(b"")
        self.socket = tmp_path / "mux.sock"
        self.log = tmp_path / "mux.log"
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "harepl.runtime.watchdog_mux", "--device", str(self.device), "--socket",
             str(self.socket), "--device-timeout-s", str(DEVICE_TIMEOUT_S), "--feed-interval-s",
             str(FEED_INTERVAL_S), "--log", str(self.log)], stderr=subprocess.DEVNULL)
        wait_until(lambda: "serving" in self.read_log() or self.popen.poll() is not None)
        assert self.popen.poll() is None

    def read_log(self):
        return self.log.read_text() if self.log.exists() else ""

    def size(self):
        return self.device.stat().st_size

    def stop(self):
        self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout=30)


@pytest.fixture
def mux(tmp_path):
    m = Mux(tmp_path)
    yield m
    if m.popen.poll() is None:
        m.popen.kill()
        m.popen.wait()


def grows(mux):
    before = mux.size()
    wait_until(lambda: mux.size() > before + 2)
    return True


def test_feeds_device_while_clients_feed_and_magic_close_on_clean_exit(mux):
    assert "not a watchdog device (test double?)" in mux.read_log()
    a = MuxWatchdog("lrm-a", 3.0, mux.socket)
    b = MuxWatchdog("lrm-b", 3.0, mux.socket)
    a.open()
    b.open()
    assert a.client_timeout_s == pytest.approx(3.0 - DEVICE_TIMEOUT_S - FEED_INTERVAL_S)
    for _ in range(10):
        a.feed()
        b.feed()
        time.sleep(0.05)
    assert grows(mux)
    a.close(clean=True)
    for _ in range(5):
        b.feed()
        time.sleep(0.05)
    assert grows(mux), "one clean close does not stop the other client's share"
    b.close(clean=True)
    assert mux.stop() == 0
    data = mux.device.read_bytes()
    assert data.endswith(b"V") and set(data[:-1]) == {0}
    assert "device closed, disarmed" in mux.read_log()


def test_unclean_client_disconnect_stops_feeding(mux):
    a = MuxWatchdog("lrm-a", 3.0, mux.socket)
    a.open()
    a.feed()
    a.close(clean=False)  # as if the client died
    wait_until(lambda: "client 'lrm-a' disconnected without close: device feeding stopped" in mux.read_log())
    size = mux.size()
    time.sleep(5 * FEED_INTERVAL_S)
    assert mux.size() == size, "after latching the mux must never feed the device again"
    with pytest.raises(WatchdogError, match="latched"):
        MuxWatchdog("late", 3.0, mux.socket).open()
    assert mux.stop() == 1
    assert not mux.device.read_bytes().endswith(b"V")
    assert "WITHOUT magic close" in mux.read_log()


def test_client_killed_uncleanly_stops_feeding(mux):
    code = ("import os, sys; from harepl.runtime.watchdog import MuxWatchdog;"
            "w = MuxWatchdog('victim', 3.0, sys.argv[1]); w.open(); w.feed(); print('open', flush=True);"
            "import time; time.sleep(1000)")
    child = subprocess.Popen([sys.executable, "-c", code, str(mux.socket)], stdout=subprocess.PIPE)
    assert child.stdout.readline().strip() == b"open"
    child.kill()
    child.wait()
    wait_until(lambda: "client 'victim' disconnected without close" in mux.read_log())


def test_one_silent_client_stops_feeding_for_all(mux):
    a = MuxWatchdog("feeder", 2.0, mux.socket)
    b = MuxWatchdog("silent", 2.0, mux.socket)
    a.open()
    b.open()
    # a keeps feeding, b does not: after b's timeout the device is no longer fed
    wait_until(lambda: a.feed() or "client 'silent' not fed" in mux.read_log())
    assert "device feeding stopped" in mux.read_log()
    size = mux.size()
    for _ in range(5):
        a.feed()
        time.sleep(FEED_INTERVAL_S)
    assert mux.size() == size


def test_too_short_watchdog_refused(mux):
    with pytest.raises(WatchdogError, match="must be > device timeout"):
        MuxWatchdog("x", DEVICE_TIMEOUT_S, mux.socket).open()


def test_backend_choice(mux, tmp_path):
    # No /dev/watchdog here: "auto" resolves to the process watchdog; with a device (here the
    # test double) and a live mux socket it resolves to the mux.
    assert choose_backend("auto", "/dev/watchdog-does-not-exist", mux.socket) == "process"
    assert choose_backend("auto", str(mux.device), tmp_path / "none.sock") == "process"
    assert choose_backend("auto", str(mux.device), mux.socket) == "mux"
    wd = open_watchdog("n", 3.0, backend="auto", mux_socket=mux.socket, device=str(mux.device))
    assert isinstance(wd, MuxWatchdog) and wd.is_open
    wd.close(clean=True)
    with pytest.raises(WatchdogError, match="unknown watchdog backend"):
        open_watchdog("n", 5.0, backend="bogus")
    with pytest.raises(WatchdogError, match="watchdog mux at"):
        open_watchdog("n", 5.0, backend="mux", mux_socket=tmp_path / "none.sock")
