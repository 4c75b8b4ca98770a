"""Failpoints: named places where a test can make a real daemon misbehave on cue, as
etcd's gofail does. Off unless HAREPL_FAILPOINTS names them (comma-separated); each fires
at most once per process. A timed signal from outside cannot hit a window of a few
milliseconds deterministically; a failpoint can.

    stall-after-active-status   SIGSTOP the daemon right after its LRM's first status
                                with mode 'active' is committed (the frozen-stall case
                                of issue 8: after a clean restart, before anything else)
"""

from __future__ import annotations

import os
import signal

KNOWN = frozenset({"stall-after-active-status"})
_fired: set[str] = set()


def armed(name: str) -> bool:
    assert name in KNOWN, name
    return name not in _fired and name in os.environ.get("HAREPL_FAILPOINTS", "").split(",")


def stall(name: str) -> None:
    """Stop this whole process (all threads) until SIGCONT, if the failpoint is armed."""
    if armed(name):
        _fired.add(name)
        os.kill(os.getpid(), signal.SIGSTOP)
