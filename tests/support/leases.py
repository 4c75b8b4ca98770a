"""Taking a node lease in Env-level tests the way the daemon's keeper does: a renewal
that is not committed within the (short) commit timeout on a loaded machine is simply
tried again at once."""

from __future__ import annotations

import time
from typing import Any


def take_node_lease(ctx: Any, log: Any, limit_s: float = 30.0) -> None:
    """Keep calling `ctx.keep_node_lease(log)` until one renewal or take commits."""
    deadline = time.monotonic() + limit_s
    while not ctx.keep_node_lease(log):
        assert time.monotonic() < deadline, "the node lease was never committed"
        time.sleep(0.05)
