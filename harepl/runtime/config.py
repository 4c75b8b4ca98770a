"""The node daemon's TOML configuration (`harepl daemon --config FILE`).

Every key is documented in `deploy/harepl.toml.example`. `load_config` either returns a
complete, checked `NodeConfig` or raises `ConfigError` whose message is one line saying
what is wrong; the CLI prints it and exits 2. Unknown keys are errors too: a typo in a
timing key must not silently fall back to a default.
"""

from __future__ import annotations

import errno
import ipaddress
import math
import os
import socket
import stat
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    """One line that says what is wrong with the configuration."""


@dataclass(frozen=True)
class Timing:
    """Loop and lease timings (docs/safety.md, "Leases"). All durations in seconds."""

    loop_s: float
    lease_local_s: float
    watchdog_s: float
    lease_timeout_s: float
    margin_s: float
    max_workers: int

    def check_safe(self) -> None:
        """Refuse timings under which a node could still run a service after the CRM
        recovered it: the CRM must wait longer than the LRM's lease, the watchdog and a
        margin for scheduling delays together."""
        for name in ("loop_s", "lease_local_s", "watchdog_s", "lease_timeout_s"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"timing.{name} must be > 0 (got {getattr(self, name)})")
        if self.margin_s < 0:
            raise ConfigError(f"timing.margin_s must be >= 0 (got {self.margin_s})")
        if self.max_workers < 1:
            raise ConfigError(f"timing.max_workers must be >= 1 (got {self.max_workers})")
        need_s = self.lease_local_s + self.watchdog_s + self.margin_s
        if not self.lease_timeout_s > need_s:
            raise ConfigError(
                "unsafe timings: lease_timeout_s must be > lease_local_s + watchdog_s + margin_s "
                f"({self.lease_timeout_s:g} <= {self.lease_local_s:g} + {self.watchdog_s:g} "
                f"+ {self.margin_s:g} = {need_s:g})"
            )
        if self.loop_s >= self.lease_local_s:
            # The LRM renews once per loop; a lease shorter than the loop lapses between
            # renewals and the node would fence itself while healthy.
            raise ConfigError(
                f"timing.loop_s ({self.loop_s:g}) must be < timing.lease_local_s ({self.lease_local_s:g})"
            )


# docs/safety.md has this table. `pve` replays Proxmox's timings (10 s loop, 60 s watchdog, 120 s lock).
PROFILES: dict[str, Timing] = {
    "default": Timing(loop_s=1.0, lease_local_s=5.0, watchdog_s=10.0, lease_timeout_s=20.0,
                      margin_s=2.0, max_workers=4),
    "fast": Timing(loop_s=0.5, lease_local_s=2.0, watchdog_s=3.0, lease_timeout_s=7.0,
                   margin_s=1.0, max_workers=4),
    "pve": Timing(loop_s=10.0, lease_local_s=30.0, watchdog_s=60.0, lease_timeout_s=120.0,
                  margin_s=10.0, max_workers=4),
}

WATCHDOG_BACKENDS = ("auto", "device", "process")

#: the shortest cluster secret accepted (it keys the Raft port's encryption)
MIN_SECRET_BYTES = 16


@dataclass(frozen=True)
class Member:
    """One cluster member as every node sees it (the same list in every node's config)."""

    name: str
    address: str
    raft_port: int

    @property
    def raft_addr(self) -> str:
        return f"{self.address}:{self.raft_port}"


@dataclass(frozen=True)
class NodeConfig:
    node: str
    members: tuple[Member, ...]
    data_dir: Path
    secret_file: Path
    api_socket: Path
    api_tcp: tuple[str, int] | None
    api_token_file: Path | None
    profile: str
    timing: Timing
    watchdog_backend: str
    watchdog_device: Path
    log_file: Path | None
    source: Path | None = None
    watchdog_mux_socket: Path = Path("/run/harepl/watchdog-mux.sock")
    watchdog_start_mux: bool = False  # the daemon starts the multiplexer (labs, tests)
    fence_config: Path | None = None  # fence.cfg (devices and credentials, 0600): runtime/fence/config.py

    @property
    def self_member(self) -> Member:
        return next(m for m in self.members if m.name == self.node)

    @property
    def peers(self) -> tuple[Member, ...]:
        return tuple(m for m in self.members if m.name != self.node)

    def read_secret(self) -> str:
        secret = _read_private(self.secret_file, "secret_file")
        n = len(secret.encode("utf-8"))
        if n < MIN_SECRET_BYTES:
            raise ConfigError(
                f"secret_file: {self.secret_file} holds {n} bytes, a cluster secret needs at least "
                f"{MIN_SECRET_BYTES} (make one: head -c 32 /dev/urandom | base64 > {self.secret_file}; "
                f"chmod 600 {self.secret_file})")
        return secret

    def read_api_token(self) -> str | None:
        if self.api_token_file is None:
            return None
        return _read_private(self.api_token_file, "api.token_file")


_TOP_KEYS = {"node", "data_dir", "secret_file", "log_file", "nodes", "api", "timing", "watchdog", "fence"}
_MEMBER_KEYS = {"name", "address", "raft_port"}
_API_KEYS = {"socket", "tcp", "token_file"}
_TIMING_KEYS = {"profile", "loop_s", "lease_local_s", "watchdog_s", "lease_timeout_s", "margin_s",
                "max_workers"}
_WATCHDOG_KEYS = {"backend", "device", "mux_socket", "start_mux"}


def load_config(path: str | os.PathLike[str], *, check_files: bool = True) -> NodeConfig:
    """Read and check a config file. `check_files=False` skips the checks that look at
    the secret and token files on disk (for tools that only need the layout)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {p}: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p}: invalid TOML: {exc}") from None
    try:
        cfg = parse_config(data, base_dir=p.parent, check_files=check_files)
    except ConfigError as exc:
        raise ConfigError(f"{p}: {exc}") from None
    return replace(cfg, source=p)


def parse_config(data: dict[str, Any], *, base_dir: Path = Path("."),
                 check_files: bool = True) -> NodeConfig:
    _no_unknown(data, _TOP_KEYS, "")
    node = _str(data, "node", "")
    if not node:
        raise ConfigError("node: must not be empty")
    members = _members(data.get("nodes"))
    if node not in {m.name for m in members}:
        raise ConfigError(f"node {node!r} is not listed in [[nodes]]")

    data_dir = _path(data, "data_dir", "", base_dir)
    secret_file = _path(data, "secret_file", "", base_dir)
    log_file = _path(data, "log_file", "", base_dir) if "log_file" in data else None

    api = _table(data, "api")
    _no_unknown(api, _API_KEYS, "api.")
    api_socket = _path(api, "socket", "api.", base_dir)
    api_tcp = _hostport(api["tcp"], "api.tcp") if "tcp" in api else None
    api_token_file = _path(api, "token_file", "api.", base_dir) if "token_file" in api else None
    if api_tcp is not None and api_token_file is None:
        raise ConfigError("api.tcp needs api.token_file (the TCP API is never open without a token)")

    timing_raw = _table(data, "timing", required=False)
    _no_unknown(timing_raw, _TIMING_KEYS, "timing.")
    profile = timing_raw.get("profile", "default")
    if profile not in PROFILES:
        raise ConfigError(f"timing.profile: unknown profile {profile!r} (choose {', '.join(PROFILES)})")
    timing = PROFILES[profile]
    overrides: dict[str, Any] = {}
    for key in _TIMING_KEYS - {"profile"}:
        if key in timing_raw:
            overrides[key] = _int(timing_raw, key, "timing.") if key == "max_workers" \
                else _number(timing_raw, key, "timing.")
    timing = replace(timing, **overrides)
    timing.check_safe()

    wd = _table(data, "watchdog", required=False)
    _no_unknown(wd, _WATCHDOG_KEYS, "watchdog.")
    backend = wd.get("backend", "auto")
    if backend not in WATCHDOG_BACKENDS:
        raise ConfigError(f"watchdog.backend: must be one of {', '.join(WATCHDOG_BACKENDS)} (got {backend!r})")
    device = _path(wd, "device", "watchdog.", base_dir) if "device" in wd else Path("/dev/watchdog")
    mux_socket = _path(wd, "mux_socket", "watchdog.", base_dir) if "mux_socket" in wd \
        else Path("/run/harepl/watchdog-mux.sock")
    start_mux = wd.get("start_mux", False)
    if not isinstance(start_mux, bool):
        raise ConfigError(f"watchdog.start_mux: must be true or false (got {start_mux!r})")

    fence_raw = _table(data, "fence", required=False)
    _no_unknown(fence_raw, {"config"}, "fence.")
    fence_config = _path(fence_raw, "config", "fence.", base_dir) if "config" in fence_raw else None

    cfg = NodeConfig(node=node, members=members, data_dir=data_dir, secret_file=secret_file,
                     api_socket=api_socket, api_tcp=api_tcp, api_token_file=api_token_file,
                     profile=profile, timing=timing, watchdog_backend=backend,
                     watchdog_device=device, log_file=log_file, watchdog_mux_socket=mux_socket,
                     watchdog_start_mux=start_mux, fence_config=fence_config)
    if check_files:
        cfg.read_secret()
        cfg.read_api_token()
    return cfg


# --- helpers: each raises ConfigError with the key's full name --------------------------

def _no_unknown(table: dict[str, Any], known: set[str], prefix: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(f"unknown key {prefix}{unknown[0]} (known: {', '.join(sorted(known))})")


def _table(data: dict[str, Any], key: str, required: bool = True) -> dict[str, Any]:
    if key not in data:
        if required:
            raise ConfigError(f"missing [{key}] table")
        return {}
    value = data[key]
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: must be a table")
    return value


def _str(table: dict[str, Any], key: str, prefix: str) -> str:
    if key not in table:
        raise ConfigError(f"missing key {prefix}{key}")
    value = table[key]
    if not isinstance(value, str):
        raise ConfigError(f"{prefix}{key}: must be a string (got {type(value).__name__})")
    return value


def _path(table: dict[str, Any], key: str, prefix: str, base_dir: Path) -> Path:
    value = _str(table, key, prefix)
    if not value:
        raise ConfigError(f"{prefix}{key}: must not be empty")
    p = Path(value)
    return p if p.is_absolute() else base_dir / p


def _number(table: dict[str, Any], key: str, prefix: str) -> float:
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{prefix}{key}: must be a number of seconds (got {value!r})")
    if not math.isfinite(value):
        raise ConfigError(f"{prefix}{key}: must be a finite number of seconds (got {value!r})")
    return float(value)


def _int(table: dict[str, Any], key: str, prefix: str) -> int:
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{prefix}{key}: must be an integer (got {value!r})")
    return value


def _port(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError(f"{name}: must be a port number 1-65535 (got {value!r})")
    return value


def _address(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{name}: must be an IP address string (got {value!r})")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ConfigError(f"{name}: not an IP address: {value!r}") from None
    return value


def _hostport(value: Any, name: str) -> tuple[str, int]:
    if not isinstance(value, str) or ":" not in value:
        raise ConfigError(f"{name}: must be \"ADDRESS:PORT\" (got {value!r})")
    host, _, port = value.rpartition(":")
    host = host.strip("[]")
    if not port.isdigit():
        raise ConfigError(f"{name}: bad port in {value!r}")
    return _address(host, name), _port(int(port), name)


def _members(value: Any) -> tuple[Member, ...]:
    if value is None:
        raise ConfigError("missing [[nodes]] (every cluster member, this node included)")
    if not isinstance(value, list) or not value:
        raise ConfigError("nodes: must be a non-empty array of tables ([[nodes]])")
    members: list[Member] = []
    for i, item in enumerate(value):
        where = f"nodes[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: must be a table")
        _no_unknown(item, _MEMBER_KEYS, f"{where}.")
        name = _str(item, "name", f"{where}.")
        if not name or not all(c.isalnum() or c in "-_." for c in name):
            raise ConfigError(f"{where}.name: must be letters, digits, '-', '_' or '.' (got {name!r})")
        if "address" not in item or "raft_port" not in item:
            raise ConfigError(f"{where}: needs address and raft_port")
        members.append(Member(name=name, address=_address(item["address"], f"{where}.address"),
                              raft_port=_port(item["raft_port"], f"{where}.raft_port")))
    names = [m.name for m in members]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise ConfigError(f"nodes: node {dup!r} listed twice")
    addrs = [m.raft_addr for m in members]
    dup = next((a for a in addrs if addrs.count(a) > 1), None)
    if dup:
        raise ConfigError(f"nodes: raft address {dup} used twice")
    return tuple(members)


def _read_private(path: Path, key: str) -> str:
    """Read a secret file; refuse one that other users can read (it authenticates the
    cluster: pysyncobj's wire format is pickle)."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{key}: {path} is not a regular file")
    if st.st_mode & 0o077:
        raise ConfigError(f"{key}: {path} is readable by others (mode {stat.S_IMODE(st.st_mode):04o}); "
                          "chmod 600 it")
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc}") from None
    if not text:
        raise ConfigError(f"{key}: {path} is empty")
    return text


# --- the host: paths, permissions, ports and the API socket ----------------------------
# `load_config` checks the file; `check_host` checks what the daemon will need on this
# machine, before it starts (and for `harepl daemon --check`). Each problem is one line
# naming the key to fix. A daemon of this node that is already running is reported as
# such: its ports and its socket are taken.

#: the longest path a Unix socket can bind on Linux (sun_path is 108 bytes with its NUL)
MAX_UNIX_PATH_BYTES = 107


def check_host(cfg: NodeConfig) -> None:
    """Raise ConfigError for the first thing on this host that would stop the daemon."""
    _dir_usable(cfg.data_dir, "data_dir")
    if cfg.log_file is not None:
        _file_usable(cfg.log_file, "log_file")
    me = cfg.self_member
    index = cfg.members.index(me)
    _port_free(me.address, me.raft_port, f"nodes[{index}].raft_port", f"node {me.name}'s Raft port")
    if cfg.api_tcp is not None:
        _port_free(cfg.api_tcp[0], cfg.api_tcp[1], "api.tcp", "TCP API port")
    _socket_path_usable(cfg.api_socket)
    if cfg.watchdog_backend == "device" and not cfg.watchdog_device.exists():
        raise ConfigError(f"watchdog.device: {cfg.watchdog_device} does not exist (load a driver, e.g. "
                          "modprobe softdog, or set watchdog.backend = \"process\")")
    from harepl.runtime.watchdog_setup import check_mux  # the multiplexer the device needs

    check_mux(cfg)
    if cfg.fence_config is not None:
        from harepl.runtime.fence.config import FenceSetupError, load_fence_cfg

        try:
            load_fence_cfg(cfg.fence_config)
        except FenceSetupError as exc:
            raise ConfigError(str(exc)) from None


def _existing_ancestor(path: Path) -> Path:
    p = path
    while not os.path.lexists(p) and p != p.parent:
        p = p.parent
    return p


def _writable(path: Path) -> str | None:
    """Why this process cannot create entries in the directory `path` (None: it can)."""
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return f"{path} is on a read-only file system"
    except OSError as exc:
        return f"cannot inspect {path}: {exc.strerror or exc}"
    if not os.access(path, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids):
        return f"{path} is not writable by uid {os.geteuid()} (chown/chmod it, or run as root)"
    return None


def _dir_usable(path: Path, key: str) -> None:
    """A directory the daemon creates (if missing) and writes into."""
    if os.path.lexists(path):
        if not path.is_dir():
            raise ConfigError(f"{key}: {path} exists and is not a directory (move it away, or point "
                              f"{key} elsewhere)")
        why = _writable(path)
    else:
        base = _existing_ancestor(path)
        if not base.is_dir():
            raise ConfigError(f"{key}: cannot create {path}: {base} is not a directory (point {key} elsewhere)")
        why = _writable(base)
        if why:
            why = f"cannot create {path}: {why}"
    if why:
        raise ConfigError(f"{key}: {why}")


def _file_usable(path: Path, key: str) -> None:
    """A file the daemon appends to (its parent directory created if missing)."""
    if os.path.lexists(path):
        if path.is_dir():
            raise ConfigError(f"{key}: {path} is a directory, not a file (point {key} at a file)")
        if not os.access(path, os.W_OK, effective_ids=os.access in os.supports_effective_ids):
            raise ConfigError(f"{key}: {path} is not writable by uid {os.geteuid()}")
        return
    _dir_usable(path.parent, key)


def unix_socket_state(path: str | os.PathLike[str]) -> str:
    """What is at a Unix socket path: 'absent', 'not a socket', 'stale' (a socket nobody
    accepts on: a dead daemon's) or 'served'."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return "absent"
    if not stat.S_ISSOCK(mode):
        return "not a socket"
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(os.fspath(path))
    except OSError:
        return "stale"
    finally:
        probe.close()
    return "served"


def _socket_path_usable(path: Path) -> None:
    key = "api.socket"
    n = len(os.fsencode(os.path.abspath(path)))
    if n > MAX_UNIX_PATH_BYTES:
        raise ConfigError(f"{key}: {path} is {n} bytes long, a Unix socket path may have at most "
                          f"{MAX_UNIX_PATH_BYTES} (choose a shorter path)")
    _dir_usable(path.parent, key)
    state = unix_socket_state(path)
    if state == "not a socket":
        raise ConfigError(f"{key}: {path} exists and is not a socket (move it away, or point {key} elsewhere)")
    if state != "served":
        return  # nothing there, or a dead daemon's socket, replaced at start
    raise ConfigError(f"{key}: {path} is already served by another daemon (is this node's daemon "
                      f"already running? stop it, or give this one another {key})")


def _port_free(address: str, port: int, key: str, what: str) -> None:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        # as the daemon binds (SO_REUSEADDR): a port in TIME_WAIT is free, a listening one is not
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((address, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(f"{key}: {what} {address}:{port} is already in use (is this node's daemon "
                              f"already running? stop what listens there, or change {key})") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise ConfigError(f"{key}: {what} {address}:{port}: {address} is not an address of this "
                              "machine (fix the address, or run this config on its own node)") from None
        if exc.errno == errno.EACCES:
            raise ConfigError(f"{key}: {what} {address}:{port}: permission denied (ports below 1024 "
                              "need root)") from None
        raise ConfigError(f"{key}: {what} {address}:{port}: cannot bind: {exc.strerror or exc}") from None
    finally:
        s.close()
