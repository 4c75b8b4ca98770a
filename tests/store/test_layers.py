"""The store is the bottom layer: importing it loads nothing of the layers above it, and
importing one domain of its vocabulary registers nothing."""

from __future__ import annotations

import json
import subprocess
import sys

ABOVE = ("harepl.roles", "harepl.runtime", "harepl.sim", "harepl.cli", "tui")


def _loaded_after(code: str) -> list[str]:
    probe = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_importing_every_store_module_loads_no_module_above_it() -> None:
    loaded = _loaded_after(
        "import importlib, pkgutil, harepl.store\n"
        "for m in pkgutil.walk_packages(harepl.store.__path__, 'harepl.store.'):\n"
        "    importlib.import_module(m.name)\n")
    assert "harepl.store.vocabulary" in loaded and "harepl.store.raft" in loaded
    assert [m for m in loaded if m.startswith(ABOVE)] == []


def test_a_domain_module_registers_nothing_when_imported() -> None:
    loaded = _loaded_after("import harepl.store.ops.leases, harepl.store.ops.datacenter")
    assert "harepl.store.vocabulary" not in loaded and "harepl.store.apply" not in loaded


def test_the_old_error_names_are_the_store_errors() -> None:
    from harepl.roles import env
    from harepl.store import errors

    assert env.StaleLeaseError is errors.StaleLeaseError
    assert env.StoreUnavailableError is errors.StoreUnavailableError
