"""Read a witness ledger (see ``witness.py``) and check it.

- ``read_ledger(path) -> list[dict]`` — events in file order (a torn last line is ignored);
- ``violations(events)`` / ``count_violations(path_or_events)`` — ``violation`` lines;
- ``starts(events, sid=None)`` — ``start`` events;
- ``assert_no_violations(path)`` — raises AssertionError listing them;
- ``witness_command(sid, ledger, lock_dir, python=sys.executable)`` — the shell command line
  that runs the witness (for an exec service's ``command`` or harepl/process's ``command``).
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Iterable
from typing import Any

Event = dict[str, Any]
WITNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "witness.py")


def witness_command(sid: str, ledger: str | os.PathLike[str], lock_dir: str | os.PathLike[str],
                    python: str = sys.executable) -> str:
    """``exec PYTHON witness.py --name SID --ledger L --lock-dir D`` (exec: the agent's pid is
    the witness itself, so a SIGTERM to the group reaches it directly)."""
    args = [python, WITNESS, "--name", sid, "--ledger", str(ledger), "--lock-dir", str(lock_dir)]
    return "exec " + " ".join(shlex.quote(a) for a in args)


def read_ledger(path: str | os.PathLike[str]) -> list[Event]:
    events: list[Event] = []
    try:
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.strip()
                if not line:
                    continue
                try:
                    events.append(json.loads(line))
                except ValueError:
                    continue  # a writer killed mid-line
    except FileNotFoundError:
        return []
    return events


def _events(src: str | os.PathLike[str] | Iterable[Event]) -> list[Event]:
    if isinstance(src, (str, os.PathLike)):
        return read_ledger(src)
    return list(src)


def violations(src: str | os.PathLike[str] | Iterable[Event]) -> list[Event]:
    return [e for e in _events(src) if e.get("event") == "violation"]


def count_violations(src: str | os.PathLike[str] | Iterable[Event]) -> int:
    return len(violations(src))


def starts(src: str | os.PathLike[str] | Iterable[Event], sid: str | None = None) -> list[Event]:
    return [e for e in _events(src) if e.get("event") == "start" and (sid is None or e.get("sid") == sid)]


def stops(src: str | os.PathLike[str] | Iterable[Event], sid: str | None = None) -> list[Event]:
    return [e for e in _events(src) if e.get("event") == "stop" and (sid is None or e.get("sid") == sid)]


def assert_no_violations(src: str | os.PathLike[str] | Iterable[Event]) -> None:
    bad = violations(src)
    if bad:
        raise AssertionError(f"{len(bad)} witness violation(s): " + "; ".join(
            f"{e.get('sid')} on {e.get('node')} pid {e.get('pid')} (holder {e.get('holder')})" for e in bad))
