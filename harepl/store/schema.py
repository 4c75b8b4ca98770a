"""SQLite schema of the replicated state.

Every node keeps one copy of this database, changed only by `harepl.store.apply.apply`
applying committed log entries.  Structured values that the decision core treats as one
unit (manager_status, lrm_status, agent parameters, group node lists) are stored as
canonical JSON text (sorted keys, no whitespace) so that two nodes applying the same
commands end with byte-identical databases.

Schema versions: a database created by an older harepl (an existing data dir, or a Raft
snapshot it wrote) is brought up to `SCHEMA_VERSION` by `migrate`, which only adds
tables. `init` runs it on open and `apply` before each command, so a snapshot restored
from an older version is upgraded at the same log position on every node.

Bounded tables (why): `applied` remembers command ids for idempotent retries and
`events` is the history; both are trimmed deterministically by sequence number so the
database (and therefore the Raft snapshot) stays small.
"""

from __future__ import annotations

import sqlite3

SCHEMA_VERSION = 2

#: how many command ids (with their first result) are remembered for duplicate detection.
#: A client retries within seconds; 20,000 commands is ~30 min at a busy 10 cmd/s.
APPLIED_IDS_MAX = 20_000
#: how many history events are kept.
EVENTS_MAX = 10_000

DDL = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE applied (
    seq    INTEGER PRIMARY KEY,
    id     TEXT NOT NULL UNIQUE,
    result TEXT NOT NULL
) STRICT;

CREATE TABLE nodes (
    name     TEXT PRIMARY KEY,
    addr     TEXT,
    added_ts REAL NOT NULL
) STRICT;

CREATE TABLE groups (
    name       TEXT PRIMARY KEY,
    nodes      TEXT NOT NULL,           -- JSON {node: priority}
    restricted INTEGER NOT NULL CHECK (restricted IN (0, 1)),
    nofailback INTEGER NOT NULL CHECK (nofailback IN (0, 1)),
    comment    TEXT
) STRICT;

CREATE TABLE resources (
    sid          TEXT PRIMARY KEY,
    type         TEXT NOT NULL CHECK (type IN ('vm', 'ct', 'fa', 'exec', 'ocf', 'systemd')),
    state        TEXT NOT NULL CHECK (state IN ('started', 'stopped', 'disabled', 'ignored')),
    node         TEXT NOT NULL,
    grp          TEXT REFERENCES groups(name),
    max_restart  INTEGER NOT NULL CHECK (max_restart >= 0),
    max_relocate INTEGER NOT NULL CHECK (max_relocate >= 0),
    failback     INTEGER NOT NULL CHECK (failback IN (0, 1)),
    comment      TEXT,
    params       TEXT                  -- JSON object of agent parameters
) STRICT;

CREATE TABLE rules (
    id   TEXT PRIMARY KEY,
    type TEXT NOT NULL CHECK (type IN ('node-affinity', 'resource-affinity')),
    body TEXT NOT NULL                 -- JSON, the whole rule
) STRICT;

CREATE TABLE leases (
    name        TEXT PRIMARY KEY,      -- 'manager' or 'agent:<node>'
    holder      TEXT,                  -- NULL when released
    epoch       INTEGER NOT NULL,      -- fencing token, +1 at every acquire
    seq         INTEGER NOT NULL,      -- +1 at every acquire, renew and release
    acquired_ts REAL NOT NULL,
    renewed_ts  REAL NOT NULL
) STRICT;

CREATE TABLE manager_status (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    epoch  INTEGER NOT NULL,
    body   TEXT NOT NULL,
    ts     REAL NOT NULL
) STRICT;

CREATE TABLE lrm_status (
    node   TEXT PRIMARY KEY,
    epoch  INTEGER NOT NULL,
    body   TEXT NOT NULL,
    ts     REAL NOT NULL
) STRICT;

CREATE TABLE crm_commands (
    seq  INTEGER PRIMARY KEY,
    cmd  TEXT NOT NULL,
    ts   REAL NOT NULL
) STRICT;

CREATE TABLE events (
    seq    INTEGER PRIMARY KEY,        -- = applied.seq of the command that produced it
    ts     REAL NOT NULL,
    id     TEXT NOT NULL,
    op     TEXT NOT NULL,
    ok     INTEGER NOT NULL,
    detail TEXT NOT NULL
) STRICT;
"""

# version 2: replicated datacenter settings (key/value, canonical JSON) and each node's
# static capacity for the 'static' CRS scheduler
DDL_V2 = """
CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,            -- 'datacenter'
    value TEXT NOT NULL                -- canonical JSON
) STRICT;

CREATE TABLE IF NOT EXISTS node_stats (
    node    TEXT PRIMARY KEY,
    maxcpu  INTEGER NOT NULL CHECK (maxcpu > 0),
    maxmem  INTEGER NOT NULL CHECK (maxmem > 0),   -- bytes
    ts      REAL NOT NULL
) STRICT;
"""

_MIGRATIONS = {2: DDL_V2}


def connect(path: str = ":memory:") -> sqlite3.Connection:
    """Open (and create if empty) a state database.

    Autocommit mode: `apply` manages its own transaction so that a failing command
    rolls back completely.  Foreign keys on, so SQLite itself rejects dangling
    references (a constraint error becomes a recorded rejection, the same everywhere).
    """
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA foreign_keys = ON")
    if path == ":memory:":
        # a replica never touches the disk while applying: SQLite's temporary files
        # (sorter, transient indices) would go to /tmp by default, and a full /tmp would
        # then fail a committed entry on this node only
        conn.execute("PRAGMA temp_store = MEMORY")
    init(conn)
    return conn


def init(conn: sqlite3.Connection) -> None:
    """Create the schema in an empty database (no-op when it already exists)."""
    row = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if row is not None:
        migrate(conn)
        return
    conn.execute("BEGIN")
    for ddl in (DDL, *_MIGRATIONS.values()):
        _run(conn, ddl)
    conn.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    conn.execute("INSERT INTO meta (key, value) VALUES ('applied_count', '0')")
    conn.execute("COMMIT")


def _run(conn: sqlite3.Connection, ddl: str) -> None:
    for stmt in ddl.split(";"):
        if stmt.strip():
            conn.execute(stmt)


def version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def migrate(conn: sqlite3.Connection) -> bool:
    """Bring an older database up to SCHEMA_VERSION (adds tables only; existing rows are
    kept). Deterministic: the result depends only on the database. True if it changed."""
    current = version(conn)
    if current >= SCHEMA_VERSION:
        return False
    conn.execute("BEGIN IMMEDIATE")
    try:
        for target in range(current + 1, SCHEMA_VERSION + 1):
            _run(conn, _MIGRATIONS[target])
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return True
