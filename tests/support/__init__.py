"""Test support: the witness service (``witness.py``), its ledger checks (``witness_check.py``)
and ``wait_until``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

WITNESS = Path(__file__).resolve().parent / "witness.py"


def wait_until(pred: Callable[[], object], timeout_s: float = 30.0, poll_s: float = 0.05) -> object:
    """Poll ``pred`` until truthy; raise AssertionError after ``timeout_s`` (a hang guard, not a
    performance assertion)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        time.sleep(poll_s)
