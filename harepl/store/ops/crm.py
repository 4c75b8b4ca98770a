"""CRM commands: the operator's queue ("migrate SID NODE", ...) that the master consumes."""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from ..envelope import MANAGER_LEASE, CommandError, Op, required
from ..fields import count, string
from .common import EPOCH, fence, fence_optional

CRM_COMMAND_RE = re.compile(
    r"^(migrate|relocate) \S+ \S+$|^stop \S+ \d+$|^(enable|disable)-node-maintenance \S+$"
)


def _crm_cmd(field: str, v: Any) -> str:
    s = string(field, v)
    if not CRM_COMMAND_RE.match(s):
        raise CommandError(f"{field}: unknown CRM command {s!r}")
    return s


def _enqueue(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    """crm_command_enqueue (operator): queue one command.  Result: ``cmd_seq``."""
    fence_optional(conn, c)
    cur = conn.execute("INSERT INTO crm_commands (cmd, ts) VALUES (?, ?)", (c["cmd"], c["ts"]))
    return {"cmd_seq": cur.lastrowid}


ENQUEUE = Op("crm_command_enqueue", _enqueue, since=1, fields={"cmd": required(_crm_cmd), "epoch": EPOCH})


def _consume(conn: sqlite3.Connection, c: dict[str, Any]) -> dict[str, Any]:
    """crm_command_consume (fenced on 'manager'): deletes queued commands with
    seq <= upto_seq; result ``commands`` = [[seq, cmd], ...] deleted, so a read-and-clear
    is one atomic step."""
    fence(conn, MANAGER_LEASE, c["epoch"])
    rows = conn.execute("SELECT seq, cmd FROM crm_commands WHERE seq <= ? ORDER BY seq",
                        (c["upto_seq"],)).fetchall()
    conn.execute("DELETE FROM crm_commands WHERE seq <= ?", (c["upto_seq"],))
    return {"commands": [[s, cmd] for s, cmd in rows]}


CONSUME = Op("crm_command_consume", _consume, since=1, fields={
    "upto_seq": required(count), "epoch": required(count)})

OPS = (ENQUEUE, CONSUME)


def crm_command_enqueue(cmd: str, **kw: Any) -> dict[str, Any]:
    return ENQUEUE.make(cmd=cmd, **kw)


def crm_command_consume(upto_seq: int, epoch: int, **kw: Any) -> dict[str, Any]:
    return CONSUME.make(upto_seq=upto_seq, epoch=epoch, **kw)
