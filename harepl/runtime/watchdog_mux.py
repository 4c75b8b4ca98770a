"""Watchdog multiplexer: one process owns ``/dev/watchdog`` and lets several clients share it
(like Proxmox's ``watchdog-mux``).

    python -m harepl.runtime.watchdog_mux --socket PATH [--device /dev/watchdog]
        [--device-timeout-s 10] [--feed-interval-s 1] [--log FILE]

It opens the device (setting its timeout with ``WDIOC_SETTIMEOUT`` when it is a real watchdog
device), listens on a Unix socket (mode 0600) and writes a keep-alive byte to the device every
``feed_interval_s`` **only while every open client has fed within its own timeout**. Client
protocol, one line per message:

- ``open NAME WATCHDOG_S`` → ``ok CLIENT_TIMEOUT_S`` (or ``error WHY``). ``WATCHDOG_S`` is the
  total time the client may go unfed before the machine resets; the mux keeps
  ``CLIENT_TIMEOUT_S = WATCHDOG_S - device_timeout_s - feed_interval_s`` for the client so the
  device fires at most ``WATCHDOG_S`` after the client's last feed.
- ``feed`` — keep-alive.
- ``close`` — clean close of this client (the "magic close" of its share).
- ``info`` → ``info DEVICE_TIMEOUT_S FEED_INTERVAL_S LATCHED`` (``LATCHED`` 0 or 1), for a
  client that checks, before it opens, that its ``WATCHDOG_S`` fits (the daemon at start-up).

A client that misses its timeout, or disconnects without ``close``, makes the mux stop feeding
the device for good (it latches): the device resets the machine ``device_timeout_s`` later.
On SIGTERM/SIGINT the mux writes the magic ``V`` and closes the device (disarmed) only if no
client is open and it has not latched; otherwise it leaves the device armed.

The public client is :class:`harepl.runtime.watchdog.MuxWatchdog`.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import os
import selectors
import signal
import socket
import struct
import sys
import time
from dataclasses import dataclass, field

WDIOC_SETTIMEOUT = 0xC0045706  # _IOWR('W', 6, int)


@dataclass
class Client:
    sock: socket.socket
    name: str = ""
    timeout_s: float = 0.0
    last_feed_s: float = 0.0
    opened: bool = False
    buf: bytes = field(default=b"")


class Mux:
    def __init__(self, device: str, socket_path: str, device_timeout_s: float = 10.0,
                 feed_interval_s: float = 1.0, log_path: str | None = None) -> None:
        self.device_path = device
        self.socket_path = socket_path
        self.device_timeout_s = device_timeout_s
        self.feed_interval_s = feed_interval_s
        self.log_path = log_path
        self.clients: dict[int, Client] = {}
        self.latched = False
        self.stopping = False
        self.sel = selectors.DefaultSelector()
        self.dev_fd = -1
        self.server: socket.socket | None = None

    def log(self, msg: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} watchdog-mux: {msg}\n"  # wall clock for humans
        sys.stderr.write(line)
        sys.stderr.flush()
        if self.log_path:
            with open(self.log_path, "a") as fh:
                fh.write(line)

    # -- device -------------------------------------------------------------------------------
    def open_device(self) -> None:
        self.dev_fd = os.open(self.device_path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            fcntl.ioctl(self.dev_fd, WDIOC_SETTIMEOUT, struct.pack("i", int(self.device_timeout_s)))
            self.log(f"device {self.device_path} timeout set to {int(self.device_timeout_s)} s")
        except OSError as err:
            if err.errno not in (errno.ENOTTY, errno.EINVAL):
                raise
            self.log(f"{self.device_path} is not a watchdog device (test double?): timeout not set")

    def feed_device(self) -> None:
        os.write(self.dev_fd, b"\0")

    def close_device(self) -> bool:
        clean = not self.latched and not any(c.opened for c in self.clients.values())
        if clean:
            os.write(self.dev_fd, b"V")  # magic close: disarm
        os.close(self.dev_fd)
        self.log("device closed, disarmed" if clean else "device closed WITHOUT magic close: it will fire")
        return clean

    # -- clients ------------------------------------------------------------------------------
    def latch(self, why: str) -> None:
        if not self.latched:
            self.latched = True
            self.log(f"{why}: device feeding stopped, it fires in {self.device_timeout_s:g} s")

    def accept(self) -> None:
        assert self.server is not None
        conn, _ = self.server.accept()
        conn.setblocking(False)
        self.clients[conn.fileno()] = Client(conn)
        self.sel.register(conn, selectors.EVENT_READ)

    def drop(self, client: Client) -> None:
        self.sel.unregister(client.sock)
        self.clients.pop(client.sock.fileno(), None)
        client.sock.close()

    def read(self, client: Client) -> None:
        try:
            data = client.sock.recv(4096)
        except (ConnectionResetError, BlockingIOError):
            data = b""
        if not data:
            if client.opened:
                self.latch(f"client '{client.name}' disconnected without close")
            self.drop(client)
            return
        client.buf += data
        while b"\n" in client.buf:
            line, client.buf = client.buf.split(b"\n", 1)
            if not self.handle(client, line.decode("utf-8", "replace").split()):
                return

    def reply(self, client: Client, text: str) -> None:
        try:
            client.sock.sendall((text + "\n").encode())
        except OSError:
            pass

    def handle(self, client: Client, words: list[str]) -> bool:
        now = time.monotonic()
        if not words:
            return True
        if words[0] == "open" and len(words) == 3 and not client.opened:
            try:
                total_s = float(words[2])
            except ValueError:
                total_s = -1.0
            timeout_s = total_s - self.device_timeout_s - self.feed_interval_s
            if timeout_s <= 0:
                self.reply(client, f"error watchdog_s must be > device timeout + feed interval "
                           f"({self.device_timeout_s + self.feed_interval_s:g} s)")
                return True
            if self.latched:
                self.reply(client, "error device already fenced (latched)")
                return True
            client.name, client.timeout_s, client.last_feed_s, client.opened = words[1], timeout_s, now, True
            self.log(f"client '{client.name}' open, timeout {timeout_s:g} s")
            self.reply(client, f"ok {timeout_s:g}")
        elif words[0] == "info" and not client.opened:
            self.reply(client, f"info {self.device_timeout_s:g} {self.feed_interval_s:g} {int(self.latched)}")
        elif words[0] == "feed" and client.opened:
            client.last_feed_s = now
        elif words[0] == "close" and client.opened:
            self.log(f"client '{client.name}' closed cleanly")
            client.opened = False
            self.drop(client)
            return False
        else:
            self.reply(client, f"error bad request {' '.join(words)[:40]!r}")
        return True

    def check_clients(self) -> None:
        now = time.monotonic()
        for c in list(self.clients.values()):
            if c.opened and now - c.last_feed_s > c.timeout_s:
                self.latch(f"client '{c.name}' not fed for {now - c.last_feed_s:.1f} s")

    # -- main loop ----------------------------------------------------------------------------
    def serve(self) -> int:
        self.open_device()
        if os.path.exists(self.socket_path):
            os.unlink(self.socket_path)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self.server.bind(self.socket_path)
        finally:
            os.umask(old)
        self.server.listen(16)
        self.server.setblocking(False)
        self.sel.register(self.server, selectors.EVENT_READ)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: setattr(self, "stopping", True))
        self.log(f"serving {self.socket_path} for {self.device_path} (pid {os.getpid()}, device timeout "
                 f"{self.device_timeout_s:g} s, keep-alive every {self.feed_interval_s:g} s)")
        next_feed = time.monotonic()
        while not self.stopping:
            now = time.monotonic()
            if now >= next_feed:
                self.check_clients()
                if not self.latched:
                    self.feed_device()
                next_feed = now + self.feed_interval_s
            for key, _ in self.sel.select(max(0.0, next_feed - time.monotonic())):
                if key.fileobj is self.server:
                    self.accept()
                else:
                    client = self.clients.get(key.fd)
                    if client is not None:
                        self.read(client)
        clean = self.close_device()
        self.server.close()
        os.unlink(self.socket_path)
        return 0 if clean else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="share one watchdog device between several clients")
    ap.add_argument("--device", default="/dev/watchdog")
    ap.add_argument("--socket", required=True)
    ap.add_argument("--device-timeout-s", type=float, default=10.0)
    ap.add_argument("--feed-interval-s", type=float, default=1.0)
    ap.add_argument("--log", default=None)
    args = ap.parse_args(argv)
    if args.feed_interval_s <= 0 or args.device_timeout_s <= args.feed_interval_s:
        print("watchdog-mux: need 0 < --feed-interval-s < --device-timeout-s", file=sys.stderr)
        return 2
    try:
        return Mux(args.device, args.socket, args.device_timeout_s, args.feed_interval_s, args.log).serve()
    except OSError as err:
        print(f"watchdog-mux: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
