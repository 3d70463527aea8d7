"""One compressor process per run folder: an exclusive lock file that names its owner.

``RUN_DIR/.lock`` is held with ``fcntl.flock`` for the whole run and records the owner's PID, host and
process start time. The kernel drops the lock when the process ends, however it ends (``kill -9``
included); the file then stays behind naming a run that is gone, and the next ``run --resume`` /
``run --force`` takes it over with a note. On this host an owner also counts as gone when its PID is
dead or now belongs to another process (the start time differs), so a lock is never held by a ghost.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from compressor.core.errors import RunDirError
from compressor.core.writeerrors import writing

LOCK_NAME = ".lock"
_RETRY_S = 0.5  # a status probe holds the lock (shared) for microseconds: retry that long before refusing


@dataclass
class Owner:
    pid: int | None
    host: str | None
    started: float | None  # the owner process's start time (seconds since the epoch)

    def describe(self) -> str:
        pid = f"PID {self.pid}" if self.pid is not None else "an unknown process"
        host = f" on {self.host}" if self.host and self.host != socket.gethostname() else ""
        since = time.strftime(", started %Y-%m-%d %H:%M:%S UTC", time.gmtime(self.started)) if self.started else ""
        return f"{pid}{host}{since}"


def _start_time(pid: int) -> float | None:
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except psutil.NoSuchProcess:
        return None
    except psutil.Error:  # exists but cannot be inspected (another user's): alive, start time unknown
        return -1.0


def _me() -> Owner:
    return Owner(os.getpid(), socket.gethostname(), _start_time(os.getpid()))


def _parse(text: str) -> Owner | None:
    if not text.strip():
        return None
    try:
        d = json.loads(text)
        return Owner(int(d["pid"]), str(d.get("host") or ""), float(d["started"]) if d.get("started") else None)
    except (ValueError, KeyError, TypeError):
        return Owner(None, None, None)  # half-written or foreign: someone, unknown


def read_owner(run_dir: Path) -> Owner | None:
    """Who the lock file names (alive or not); None when there is no lock file or it is empty."""
    try:
        return _parse((Path(run_dir) / LOCK_NAME).read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return None


def owner_alive(owner: Owner) -> bool | None:
    """Whether ``owner`` still runs: True / False on this host, None when that cannot be told (another host)."""
    if owner.pid is None or owner.host != socket.gethostname():
        return None
    started = _start_time(owner.pid)
    if started is None:
        return False
    return started < 0 or owner.started is None or abs(started - owner.started) < 1.0  # PID reused: differs


def _kernel_lock_held(path: Path) -> bool:
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError as e:
        return e.errno in (errno.EAGAIN, errno.EACCES)
    finally:
        os.close(fd)  # drops a probe's shared lock


def holder(run_dir: Path) -> Owner | None:
    """The other live process that holds the run folder, or None (no lock, a stale one, or our own)."""
    path = Path(run_dir) / LOCK_NAME
    if not path.is_file():
        return None
    owner = read_owner(run_dir)
    if owner is not None and owner.pid == os.getpid() and owner.host == socket.gethostname():
        return None
    alive = owner_alive(owner) if owner is not None else None
    if alive is not None:
        return owner if alive else None
    return (owner or Owner(None, None, None)) if _kernel_lock_held(path) else None


class RunLock:
    """The lock of one run folder, held by this process until :meth:`release` (or its death)."""

    def __init__(self, path: Path, fd: int, previous: Owner | None):
        self.path, self.fd, self.previous = path, fd, previous

    @property
    def note(self) -> str | None:
        if self.previous is None:
            return None
        return f"{self.path.parent}: took over the lock of a run that is gone ({self.previous.describe()})"

    @classmethod
    def acquire(cls, run_dir: Path) -> RunLock:
        """Lock ``run_dir`` (created if missing) or refuse with one line naming the process that holds it."""
        run_dir = Path(run_dir)
        if run_dir.exists() and not run_dir.is_dir():
            raise RunDirError(f"{run_dir}: exists and is not a directory")
        path = run_dir / LOCK_NAME
        with writing("the run folder's lock file", path):
            run_dir.mkdir(parents=True, exist_ok=True)
            deadline = time.monotonic() + _RETRY_S
            while True:
                got = cls._try(path)
                if isinstance(got, RunLock):
                    return got
                if time.monotonic() > deadline:
                    raise RunDirError(
                        f"{run_dir}: in use by another compressor run ({got.describe()}); wait for it to finish or stop it first"
                    )
                time.sleep(0.02)

    @classmethod
    def _try(cls, path: Path) -> RunLock | Owner:
        """The lock, or the owner that holds it now."""
        import fcntl

        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        keep = False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                return read_owner(path.parent) or Owner(None, None, None)
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # a releasing owner unlinked the file we opened: start again on the new one
                return cls._try(path)
            previous = _parse(os.pread(fd, 65536, 0).decode("utf-8", errors="replace"))
            if previous is not None and owner_alive(previous) and previous.pid != os.getpid():
                return previous  # alive, yet it does not hold the kernel lock (the file was replaced under it)
            me = _me()
            data = json.dumps({"pid": me.pid, "host": me.host, "started": me.started}).encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            os.fsync(fd)
            keep = True
            return cls(path, fd, previous)
        finally:
            if not keep:
                os.close(fd)

    def release(self) -> None:
        """Remove the lock file and drop the lock (idempotent)."""
        if self.fd is None:
            return
        try:
            if os.fstat(self.fd).st_ino == os.stat(self.path).st_ino:
                os.unlink(self.path)
        except OSError:
            pass  # gone already, or a read-only folder: the kernel lock still goes with the close below
        finally:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class LockSlot:
    """Where a run keeps its folder's lock: taken by the main process once the folder is known, released in one
    place whatever happens."""

    def __init__(self):
        self.held: RunLock | None = None

    def take(self, run_dir: Path) -> None:
        self.held = RunLock.acquire(run_dir)

    @property
    def note(self) -> str | None:
        return self.held.note if self.held is not None else None

    def release(self) -> None:
        if self.held is not None:
            self.held.release()
