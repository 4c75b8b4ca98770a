"""TUI benchmark: with N services (default 1,000) on a real API server over the real
store, is a key press answered in under 100 ms, and does a refresh never block input?

    .venv/bin/python bench/tui_bench.py [--services 1000] [--presses 200] [--interval 0.2]

The API server runs in a process of its own (as the daemon does), where a writer thread
plays the CRM, changing 10% of the services' states every `--interval` seconds; the app
runs headless (Textual's pilot) and refreshes every `--interval` seconds, so every
refresh has cells to update. Measured:
- key press: a Key event posted to the app until its handler has run (the cursor
  moved), while the refreshes go on (pilot.press is not used: it also waits for the
  whole process to be idle, refresh threads included);
- loop lag: a 5 ms ticker on the UI's event loop; how late it wakes is how long input
  would have waited behind anything on the UI thread (a refresh, a redraw);
- refresh: the worker's read and row building (a thread, off the UI), and the UI
  thread's handling of one SnapshotReady (diffing 1,000 rows, updating changed cells).
Prints one JSON object; the load average before and after is part of it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from textual import events  # noqa: E402

from harepl.runtime.api.local_backend import LocalApi  # noqa: E402
from tui import app as tui_app  # noqa: E402
from tui.app import HareplApp  # noqa: E402
from tui.source import LiveSource  # noqa: E402

NODES = ("node1", "node2", "node3")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def summary(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    if not ms:
        return {"n": 0}
    return {"n": len(ms), "p50_ms": round(statistics.median(ms), 2), "p95_ms": round(pct(ms, 95), 2),
            "max_ms": round(max(ms), 2)}


def populate(api: LocalApi, n: int) -> dict[str, dict[str, Any]]:
    for i in range(n):
        api.backend.submit({"op": "resource_add", "sid": f"exec:s{i:04d}",
                            "config": {"type": "exec", "state": "started", "node": NODES[i % 3], "max_restart": 1,
                                       "max_relocate": 1, "failback": True, "params": {"command": "sleep 1"}}})
    return {f"exec:s{i:04d}": {"state": "started", "node": NODES[i % 3], "uid": f"u{i}", "running": 1}
            for i in range(n)}


def write(api: LocalApi, ss: dict[str, dict[str, Any]]) -> None:
    now = time.time()
    api.backend.write_manager_status("node1", {"master_node": "node1", "timestamp": now,
                                               "node_status": {n: "online" for n in NODES}, "service_status": ss})
    for node in NODES:
        api.backend.write_lrm_status(node, {"mode": "active", "state": "active", "results": {}, "timestamp": now})


def serve(directory: str, n: int, interval_s: float) -> None:
    """The server process: the API on the store, and the CRM writer; until stdin closes."""
    with LocalApi(directory) as api:
        ss = populate(api, n)
        write(api, ss)
        stop = threading.Event()
        states = ("started", "migrate", "started", "request_stop", "started", "stopped")

        def crm() -> None:      # 10% of the states change per interval
            k = 0
            while not stop.is_set():
                k += 1
                for i, sid in enumerate(sorted(ss)):
                    if i % 10 == k % 10:
                        ss[sid] = {**ss[sid], "state": states[(k + i) % len(states)]}
                write(api, ss)
                stop.wait(interval_s)

        print(api.socket_path, flush=True)
        threading.Thread(target=crm, daemon=True).start()
        sys.stdin.read()
        stop.set()


async def measure(socket_path: str, n: int, presses: int, interval_s: float) -> dict[str, Any]:
    ready_times: list[float] = []
    worker_times: list[float] = []
    original_ready = HareplApp.on_snapshot_ready
    original_worker = HareplApp._refresh_worker.__wrapped__      # type: ignore[attr-defined]

    def timed_ready(self: HareplApp, message: tui_app.SnapshotReady) -> None:
        start = time.perf_counter()
        original_ready(self, message)
        ready_times.append(time.perf_counter() - start)

    def timed_worker(self: HareplApp, after_seq: int | None) -> None:
        start = time.perf_counter()
        original_worker(self, after_seq)
        worker_times.append(time.perf_counter() - start)

    HareplApp.on_snapshot_ready = timed_ready               # type: ignore[method-assign]
    HareplApp._refresh_worker = tui_app.work(thread=True, group="refresh", exit_on_error=False)(timed_worker)  # type: ignore[method-assign]
    app = HareplApp(LiveSource([socket_path], timeout_s=30.0), interval_s=interval_s)
    phases: dict[str, Any] = {}
    async with app.run_test(size=(160, 48)) as pilot:
        while app.services_table.row_count < n:
            await pilot.pause(0.05)
        first_fill = ready_times[0]
        for phase, refreshing in (("baseline_no_refresh", False), ("with_refreshes", True)):
            # baseline: the same keys on the same machine with refreshes held back (the
            # app's one-refresh-at-a-time flag), to tell the machine's load from the TUI's
            if not refreshing:
                app.refresh_timer.pause()       # the interval's refreshes held back
                while app._refreshing:
                    app._refresh_again = False
                    await asyncio.sleep(0.01)
            else:
                app.refresh_timer.resume()
                app.action_refresh()
            ready_times.clear()
            worker_times.clear()
            lags: list[float] = []
            key_times: list[float] = []
            running = [True]

            async def ticker(lags: list[float] = lags, running: list[bool] = running) -> None:
                while running[0]:
                    start = time.perf_counter()
                    await asyncio.sleep(0.005)
                    lags.append(time.perf_counter() - start - 0.005)

            tick = asyncio.create_task(ticker())
            app.services_table.move_cursor(row=n // 2, animate=False)
            for i in range(presses):
                row = app.services_table.cursor_row
                key = "down" if (i // 50) % 2 == 0 else "up"
                start = time.perf_counter()
                app.post_message(events.Key(key, None))
                while app.services_table.cursor_row == row:
                    await asyncio.sleep(0.0005)
                key_times.append(time.perf_counter() - start)
                await asyncio.sleep(0.02)       # a fast typist: 50 keys/s, refreshes in between
            running[0] = False
            await tick
            phases[phase] = {"key_press": summary(key_times), "loop_lag": summary(lags),
                             "refresh_ui_thread": summary(ready_times),
                             "refresh_worker_thread": summary(worker_times), "refreshes": len(ready_times)}
        app.refresh_timer.pause()           # no refresh during the shutdown
        while app._refreshing:
            app._refresh_again = False
            await asyncio.sleep(0.01)
    HareplApp.on_snapshot_ready = original_ready            # type: ignore[method-assign]
    return {**phases, "first_fill_ui_thread_ms": round(first_fill * 1000, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--presses", type=int, default=200)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--serve", metavar="DIR", help=argparse.SUPPRESS)   # the server process
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.services, args.interval)
        return
    directory = tempfile.mkdtemp(prefix="htb-", dir="/tmp")
    load_before = os.getloadavg()
    server = subprocess.Popen([sys.executable, __file__, "--serve", directory, "--services", str(args.services),
                               "--interval", str(args.interval)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        assert server.stdout is not None and server.stdin is not None
        socket_path = server.stdout.readline().strip()
        result = asyncio.run(measure(socket_path, args.services, args.presses, args.interval))
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=30)
        shutil.rmtree(directory, ignore_errors=True)
    result.update(services=args.services, interval_s=args.interval, cpus=os.cpu_count(),
                  loadavg_before=[round(x, 2) for x in load_before],
                  loadavg_after=[round(x, 2) for x in os.getloadavg()],
                  at=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                  verdict={"key_press_p95_under_100ms": result["with_refreshes"]["key_press"]["p95_ms"] < 100,
                           "key_press_max_under_100ms": result["with_refreshes"]["key_press"]["max_ms"] < 100})
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
