"""The core is pure: importing every module of `harepl.core` (in a fresh interpreter, so
nothing an earlier test imported hides a regression) loads no module that does I/O and
none of the layers above the core.  Decisions stay testable without a store, a socket or
a thread; the roles, the simulator and the runtime bring the I/O.  (The store's own rule,
that it imports nothing above it, is tests/store/test_layers.py.)"""

from __future__ import annotations

import json
import subprocess
import sys

#: modules that open files, sockets, processes or threads, or that pull them in
IO_MODULES = ("sqlite3", "_sqlite3", "socket", "_socket", "ssl", "select", "selectors", "subprocess",
              "threading", "asyncio", "multiprocessing", "concurrent.futures", "http", "urllib.request",
              "shutil", "tempfile", "logging", "click", "sqlite_utils", "textual")
#: the layers above the core
ABOVE = ("harepl.store", "harepl.roles", "harepl.runtime", "harepl.sim", "harepl.cli", "tui")


def _loaded_after(code: str) -> list[str]:
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def _is(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_importing_every_core_module_loads_no_io_and_no_layer_above() -> None:
    loaded = _loaded_after(
        "import importlib, pkgutil, harepl.core\n"
        "for m in pkgutil.walk_packages(harepl.core.__path__, 'harepl.core.'):\n"
        "    importlib.import_module(m.name)\n")
    assert "harepl.core.manager" in loaded and "harepl.core.vocabulary" in loaded
    assert [m for m in loaded if _is(m, IO_MODULES)] == []
    assert [m for m in loaded if _is(m, ABOVE)] == []


def test_the_probe_sees_io_modules() -> None:
    """The check above would pass vacuously if the probe missed modules."""
    loaded = _loaded_after("import harepl.store.vocabulary, sqlite3")
    assert "sqlite3" in loaded and "harepl.store" in loaded
