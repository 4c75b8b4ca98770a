"""Durable journal for pysyncobj (part of `harepl.store.raft`, the only pysyncobj user).

Disk full (issue 8): pysyncobj's FileJournal is memory-mapped and grows its file with
ftruncate + mmap.resize.  On tmpfs or ext4 without free space the ftruncate succeeds (the
file just becomes sparse) and the first write to the new page kills the process with
SIGBUS -- no log line, and after a restart the next append does it again.  Here every
growth is reserved for real first (`posix_fallocate`, which fails with ENOSPC instead),
and a write that cannot be made (journal append, meta file, compaction) is kept in memory
as *pending*: the journal stays dirty, `sync()` retries it and raises `DiskFull` while it
fails, and nothing the member sends leaves before a sync succeeded (`transport.py`), so
it acknowledges, votes and answers nothing it has not persisted.  `stand_aside` keeps such
a member from leading (a leader counts itself toward every commit) or starting an
election.  `DiskState` logs one critical line when writing starts to fail and one when
it works again; no restart is needed.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from pysyncobj.journal import FIRST_RECORD_OFFSET, FileJournal, ResizableFile
from pysyncobj.monotonic import monotonic as _raft_clock

log = logging.getLogger("harepl.store.raft")

#: raised by `_DurableJournal.sync()` while a journal or meta write cannot be made
class DiskFull(Exception):
    """The journal could not be made durable (disk full, quota, I/O error): every held
    message stays held and the write is retried at the next sync."""


#: the kind of failure a successful snapshot write clears (the journal's sync clears the rest)
SNAPSHOT = "snapshot write"
#: the DiskStates that have failing writes (a log filter consults them; module-wide
#: because pysyncobj's loggers are)
_TROUBLED: weakref.WeakSet[DiskState] = weakref.WeakSet()


#: a full disk that frees a few blocks (our own journal truncation does) lets a write
#: through and fails the next: a failure this soon after "writable again" is the same
#: episode (one critical line per episode, a warning for the flap)
SETTLED_S = 10.0


class DiskState:
    """Which writes of one data directory fail now; one log line when that starts, one
    when it ends (not one per failed write)."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.failing: dict[str, str] = {}
        self.since: float | None = None
        self.writable_at: float | None = None  # when it last became writable again
        self.episodes = 0

    @property
    def full(self) -> bool:
        return bool(self.failing)

    def failed(self, what: str, err: BaseException) -> None:
        text = (f"[Errno {err.errno}] {err.strerror}" if isinstance(err, OSError) and err.strerror
                else f"{type(err).__name__}: {err}")
        first = not self.failing
        self.failing[what] = text
        if first:
            self.since = now = time.monotonic()
            _TROUBLED.add(self)
            if self.writable_at is not None and now - self.writable_at < SETTLED_S:
                log.warning("store: %s full again %.1f s after it was writable (%s: %s)", self.where,
                            now - self.writable_at, what, text)
                return
            self.episodes += 1
            kind = "disk full" if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT) \
                else "cannot write"
            log.critical("store: %s: cannot write %s (%s: %s); this member acknowledges nothing it has not "
                         "persisted and retries until space is freed (while its journal cannot grow it "
                         "stops acknowledging, so its lease lapses and its services stop)",
                         kind, self.where, what, text)

    def ok(self, what: str | None = None) -> None:
        """`what` works again (None: everything but the snapshot, after a journal sync)."""
        if not self.failing:
            return
        if what is None:
            for k in [k for k in self.failing if k != SNAPSHOT]:
                del self.failing[k]
        else:
            self.failing.pop(what, None)
        if not self.failing:
            _TROUBLED.discard(self)
            self.writable_at = time.monotonic()
            took = self.writable_at - (self.since or self.writable_at)
            self.since = None
            log.warning("store: %s writable again after %.1f s: everything this member acknowledges is on "
                        "disk again, it takes part in the cluster again", self.where, took)


class _QuietWhileFull(logging.Filter):
    """pysyncobj logs a warning (or a traceback) for every failed snapshot write and
    every failed write of a received snapshot -- every tick while the disk is full.
    `DiskState` already said it once: drop those while some data directory is failing."""

    _MESSAGES = ("Failed to store full dump", "Failed to write incoming transition data",
                 "Failed to open file for incoming transition")

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_TROUBLED and record.getMessage().startswith(self._MESSAGES))


for _name in ("pysyncobj.syncobj", "pysyncobj.serializer"):
    logging.getLogger(_name).addFilter(_QuietWhileFull())


def _fsync_path(path: str, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _ReservedFile(ResizableFile):  # type: ignore[misc]
    """pysyncobj's ResizableFile (the journal's mmap) that allocates disk space before it
    maps it: posix_fallocate fails with ENOSPC where ftruncate + a write to the mapping
    would raise SIGBUS.  `reserved`: bytes from the start known to be allocated."""

    reserved: int

    @classmethod
    def adopt(cls, f: ResizableFile) -> _ReservedFile:
        f.__class__ = cls
        r: _ReservedFile = f
        r.reserved = FIRST_RECORD_OFFSET  # the header was written with write(): allocated
        try:
            r._reserve(len(r._ResizableFile__mm))  # a journal grown before this fix is sparse
        except OSError:
            pass  # the next write that needs the space tries again
        return r

    def _reserve(self, end: int) -> None:
        size = len(self._ResizableFile__mm)  # the mapping (mmap.size() is the file's size)
        want = size if end <= size else max(int(size * self._ResizableFile__resizeFactor), end)
        os.posix_fallocate(self._ResizableFile__f.fileno(), 0, want)
        self.reserved = max(self.reserved, want)

    def write(self, offset: int, values: bytes) -> None:
        end = offset + len(values)
        if end > self.reserved:
            self._reserve(end)      # OSError (ENOSPC): nothing written, nothing mapped
        mm = self._ResizableFile__mm
        if end > len(mm):
            mm.resize(self.reserved)  # the file is already that long: no sparse page
        mm[offset:end] = values


class _DurableJournal(FileJournal):  # type: ignore[misc]
    """pysyncobj's FileJournal that records its writes; `sync()` makes them durable.

    Installed by switching the class of the journal SyncObj created (`adopt`), so reads
    keep FileJournal's own code path (a delegating wrapper cost ~6% of leader CPU).

    Writes that fail (disk full) never raise into pysyncobj: the entries stay in the
    in-memory list (the last `_d_unwritten` of them are not in the file yet), the meta is
    marked pending, and `sync()` -- which every outgoing message waits for -- retries
    them and raises `DiskFull` until they are written."""

    dirty: bool
    syncs: int
    disk: DiskState
    _d_fd: int | None
    _d_path: str
    _d_dir: str
    _d_durable: bool
    _d_meta_dirty: bool
    _d_meta_pending: bool
    _d_unwritten: int
    _d_lock: threading.Lock
    #: the highest applied log index (set by StoreNode) and what to call when an applied
    #: entry is replaced by a different one, or when an fsync failed (the member stops)
    applied_idx: Callable[[], int]
    on_divergence: Callable[[str], None] | None
    _d_replaced: dict[int, tuple[bytes, int]]

    @classmethod
    def adopt(cls, inner: Any, path: str, durable: bool) -> _DurableJournal:
        if type(inner) is not FileJournal:
            raise TypeError(f"expected pysyncobj FileJournal, got {type(inner).__name__}")
        inner.__class__ = cls
        j: _DurableJournal = inner
        j._d_path = path
        j._d_dir = os.path.dirname(path) or "."
        j._d_durable = durable
        j.dirty = True  # the initial entry/meta written during SyncObj.__init__
        j._d_meta_dirty = os.path.exists(path + ".meta")
        j._d_meta_pending = False
        j._d_unwritten = 0
        j.syncs = 0
        j._d_fd = None
        j._d_lock = threading.Lock()
        j.applied_idx = lambda: 0
        j.on_divergence = None
        j._d_replaced = {}
        j.disk = DiskState(j._d_dir)
        _ReservedFile.adopt(j._FileJournal__journalFile)
        return j

    # -- writes: mark dirty; a write that fails stays pending --------------------------------

    def add(self, command: bytes, idx: int, term: int) -> None:
        was = self._d_replaced.pop(idx, None)
        if was is not None and was != (command, term) and self.on_divergence is not None:
            self.on_divergence(f"log entry {idx} was applied as term {was[1]} and is now replaced by a "
                               f"different entry of term {term}: this member's state may differ from the others'")
        self._append(command, idx, term)

    def _append(self, command: bytes, idx: int, term: int) -> None:
        self.dirty = True
        if self._d_unwritten:  # keep the file a prefix of the log: behind the pending ones
            self._FileJournal__journal.append((command, idx, term))
            self._d_unwritten += 1
            return
        try:
            super().add(command, idx, term)
        except OSError as e:
            # FileJournal.add appends to its list first, then writes; the reservation
            # failed before anything was written, so only the file lacks the entry
            self._d_unwritten = 1
            self.disk.failed("raft journal append", e)

    def _write_pending(self) -> None:
        """Write the pending entries to the file (OSError: as many as fit were)."""
        n = self._d_unwritten
        if not n:
            return
        entries = self._FileJournal__journal
        pending = entries[len(entries) - n:]
        del entries[len(entries) - n:]
        for i, entry in enumerate(pending):
            try:
                FileJournal.add(self, *entry)  # appends to the list again, then writes
            except OSError:
                entries.extend(pending[i + 1:])
                self._d_unwritten = n - i
                raise
        self._d_unwritten = 0

    def clear(self) -> None:
        super().clear()
        self._d_unwritten = 0
        self._d_replaced.clear()  # a snapshot install: the applied state is replaced too
        self.dirty = True

    def deleteEntriesFrom(self, entryFrom: int) -> None:  # noqa: N802,N803 - pysyncobj API
        # pysyncobj truncates everything after a follower's prevLogIdx, already-applied
        # entries included, and re-adds what the leader sent.  That is harmless only if
        # the re-added entries are the ones applied: remember them and check in add().
        applied = self.applied_idx()
        for command, idx, term in self[entryFrom:]:
            if idx > applied:
                break
            self._d_replaced[idx] = (bytes(command), term)
        drop = min(max(0, len(self) - entryFrom), self._d_unwritten)
        if drop:  # pending entries are only in memory
            del self._FileJournal__journal[len(self) - drop:]
            self._d_unwritten -= drop
        if len(self) > entryFrom:
            super().deleteEntriesFrom(entryFrom)  # rewrites the header only: no new space
        self.dirty = True

    def deleteEntriesTo(self, entryTo: int) -> None:  # noqa: N802,N803
        # compaction: the snapshot was just renamed into place; make the rename durable
        # before the journal forgets the entries it covers
        if self._d_durable:
            _fsync_path(self._d_dir, directory=True)
        if not self._d_durable:
            self._compact_in_place(entryTo)
            return
        # FileJournal rewrites itself in place (clear + add): a crash half-way leaves a
        # torn journal.  Write the kept entries to a new file, fsync, rename over.
        try:
            self.sync()
            self._compact_to_new_file(entryTo)
        except (OSError, DiskFull) as e:
            # no room for a second file (or pending writes): the snapshot is already in
            # place, and a journal still starting before it would be thrown away at the
            # next start (pysyncobj clears a journal that does not start at the
            # snapshot), so compact in place -- what pysyncobj itself does; it needs no
            # new space, only a crash half-way through tears it
            log.warning("store: journal compaction in place (%s)", e)
            self._compact_in_place(entryTo)
        try:
            self.sync()
        except DiskFull:
            pass  # pending writes stay pending: the next tick's flush retries them

    def _compact_in_place(self, entryTo: int) -> None:  # noqa: N803
        kept = self[entryTo:]
        FileJournal.clear(self)  # the header only
        self._d_unwritten = 0
        for entry in kept:
            self._append(*entry)

    def _compact_to_new_file(self, entryTo: int) -> None:  # noqa: N803
        kept = self[entryTo:]
        tmp = self._d_path + ".compact"
        if os.path.exists(tmp):
            os.unlink(tmp)
        try:
            fresh = FileJournal(tmp)
            _ReservedFile.adopt(fresh._FileJournal__journalFile)
            try:
                for entry in kept:
                    fresh.add(*entry)
            finally:
                fresh._destroy()          # flushes and closes its mmap
            _fsync_path(tmp)
            os.chmod(tmp, 0o600)
            self._store_meta()            # reopening rereads it
        except OSError:
            for leftover in (tmp, self._d_path + ".meta.tmp"):
                try:
                    os.unlink(leftover)
                except OSError:
                    pass
            raise
        self._FileJournal__journalFile._destroy()
        if self._d_fd is not None:
            os.close(self._d_fd)
            self._d_fd = None
        os.replace(tmp, self._d_path)
        FileJournal.__init__(self, self._d_path)  # reload from the new file
        _ReservedFile.adopt(self._FileJournal__journalFile)
        self._d_unwritten = 0
        self._d_meta_pending = False
        self._d_meta_dirty = True                 # meta and the rename: fsynced by sync()
        self.dirty = True

    def setCurrentTerm(self, term: int, votedForNodeId: Any) -> None:  # noqa: N802,N803
        try:
            super().setCurrentTerm(term, votedForNodeId)  # stores the meta file
        except OSError as e:
            self._meta_failed(e)  # no vote or vote request leaves before it is stored
        self._d_meta_dirty = self.dirty = True

    def onOneSecondTimer(self) -> None:  # noqa: N802 - pysyncobj API
        if self._d_unwritten or self._d_meta_pending:
            return  # sync() writes the entries first, then the meta
        try:
            super().onOneSecondTimer()
        except OSError as e:
            self._meta_failed(e)
            self.dirty = True

    def _store_meta(self) -> None:
        self._FileJournal__metaStorer.storeMeta(self._FileJournal__meta)
        self._FileJournal__metaSaved = True

    def _meta_failed(self, e: OSError) -> None:
        self._d_meta_pending = True
        try:
            os.unlink(self._d_path + ".meta.tmp")  # a partial file would hold the space
        except OSError:
            pass
        self.disk.failed("raft meta write", e)

    def _destroy(self) -> None:
        try:
            self.sync()
        except DiskFull:
            log.warning("store: stopping with journal writes that could not be made (disk full): "
                        "they were never acknowledged")
        super()._destroy()
        if self._d_fd is not None:
            os.close(self._d_fd)
            self._d_fd = None

    def sync(self) -> None:
        """Make every write so far durable (no-op when clean).  Called before sending.
        Raises DiskFull while a pending write still fails (the journal stays dirty)."""
        if not self.dirty:
            return
        with self._d_lock:
            if not self.dirty:
                return
            self.dirty = False
            try:
                self._sync_locked()
            except BaseException:
                self.dirty = True
                raise
            self.disk.ok()

    def _sync_locked(self) -> None:
        try:
            self._write_pending()
        except OSError as e:
            self.disk.failed("raft journal append", e)
            raise DiskFull(f"journal append: {e}") from e
        if self._d_durable:
            # On Linux, msync(MS_SYNC) of a shared file mapping is an fsync of that range,
            # and fdatasync writes back pages dirtied through the mmap as well (plus the
            # size): one fdatasync on a long-lived descriptor is enough.
            if self._d_fd is None:
                self._d_fd = os.open(self._d_path, os.O_RDONLY)
            self._fsync_or_stop(lambda: os.fdatasync(self._d_fd))  # type: ignore[arg-type]
        if self._d_meta_pending:
            try:
                self._store_meta()
            except OSError as e:
                self._meta_failed(e)
                raise DiskFull(f"meta write: {e}") from e
            self._d_meta_pending = False
            self._d_meta_dirty = True
        if self._d_durable:
            if self._d_meta_dirty:
                self._fsync_or_stop(lambda: _fsync_path(self._d_path + ".meta"))
                self._fsync_or_stop(lambda: _fsync_path(self._d_dir, directory=True))  # meta is replaced by rename
                self._d_meta_dirty = False
            self.syncs += 1

    def _fsync_or_stop(self, fsync: Callable[[], None]) -> None:
        """After a failed fsync Linux may have dropped the dirty pages' error: a retry
        can succeed without the data being on disk.  Not retried: the member stops."""
        try:
            fsync()
        except OSError as e:
            why = f"fsync in {self._d_dir} failed ([Errno {e.errno}] {e.strerror}): written entries may not be on disk"
            if self.on_divergence is not None:
                self.on_divergence(why)
            raise DiskFull(why) from e


def stand_aside(obj: Any) -> None:
    """The journal of SyncObj `obj` is not durable (a sync raised DiskFull): a leader
    steps down now -- pysyncobj counts the leader itself toward every commit, also for
    entries it could not persist -- and no election starts while it lasts (its vote
    requests could not leave anyway).  Called at the end of the tick, before pysyncobj
    reads its sockets and before the next commit computation."""
    if obj._isLeader():
        obj._SyncObj__setState(0)        # _RAFT_STATE.FOLLOWER
        obj._SyncObj__raftLeader = None
        log.warning("raft: stepping down as leader: this member cannot persist its journal")
    obj._SyncObj__raftElectionDeadline = _raft_clock() + obj._SyncObj__generateRaftTimeout()
