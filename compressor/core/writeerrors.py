"""Disk full, read-only folders and other OS write errors: one clear line instead of a traceback.

Writers wrap what they write in :func:`writing`; an OS error inside (an ``OSError``, or a library's
wrapper around one: safetensors' ``SafetensorError: ... (os error 28)``, tokenizers' ``Exception``,
torch's stream writer) becomes a :class:`WriteError` that says what was being written, why it
failed and how much room is left. The pipeline adds how to continue (``--resume``); the CLI prints
it as one line with exit code 2.
"""

from __future__ import annotations

import errno
import logging
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from compressor.core.errors import CompressorError, one_line

REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large (a file-size limit is set)",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "input/output error",
}
ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # fixed by freeing space (or lifting a limit)
# OS error texts as libraries quote them (strerror, Rust's io::Error); the first match wins
_TEXTS = {
    "no space left on device": errno.ENOSPC,
    "disk quota exceeded": errno.EDQUOT,
    "file too large": errno.EFBIG,
    "read-only file system": errno.EROFS,
    "permission denied": errno.EACCES,
    "input/output error": errno.EIO,
}
# a write that failed without saying why (torch.save's zip writer): the free room tells
_FAILED_WRITE = ("inline_container", "pytorchstreamwriter", "iostream error", "file write failed", "failed writing")


class WriteError(CompressorError):
    """An artifact, checkpoint or report could not be written (disk full, read-only folder, ...)."""

    def __init__(self, what: str, path: Path | str | None, code: int | None, detail: str = ""):
        self.what, self.path, self.code, self.detail = what, Path(path) if path else None, code, detail
        self.resume_dir: Path | None = None  # set by the pipeline: the run that `--resume` continues
        super().__init__(what)

    def __str__(self) -> str:
        where = f" ({self.path})" if self.path and str(self.path) not in self.what else ""
        reason = REASONS.get(self.code) or self.detail or "the write failed"
        room = free_space(self.path)
        text = f"could not write {self.what}{where}: {reason}" + (f"; {room} free on that disk" if room else "")
        if self.resume_dir is not None:
            fix = (
                "free some space"
                if self.code in ROOM or self.code is None
                else "make the folder writable"
                if self.code in (errno.EROFS, errno.EACCES, errno.EPERM)
                else "fix that"
            )
            text += f"; the last checkpoint is intact: {fix}, then `compressor run --resume {self.resume_dir}` continues from it"
        return one_line(text)


def free_space(path: Path | str | None) -> str | None:
    """Room left on the disk that holds ``path`` (its nearest existing folder), e.g. ``"1.2 GB"``."""
    if path is None:
        return None
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        free = shutil.disk_usage(p).free
    except OSError:
        return None
    return human_bytes(free)


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def os_errno(exc: BaseException | None) -> int | None:
    """The OS error number behind ``exc``: an ``OSError``'s errno, or one a wrapper names in its message
    ("... (os error 28)", "No space left on device"); the chain of causes is searched too."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno:
            return exc.errno
        text = str(exc).lower()
        if m := re.search(r"os error (\d+)", text):
            return int(m.group(1))
        for t, code in _TEXTS.items():
            if t in text:
                return code
        exc = exc.__cause__ or exc.__context__
    return None


def _failed_write(exc: BaseException) -> bool:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if any(t in str(exc).lower() for t in _FAILED_WRITE):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def as_write_error(
    exc: BaseException, what: str | None = None, path: Path | str | None = None, strict: bool = False
) -> WriteError | None:
    """``exc`` as a :class:`WriteError`, or None when it is not an OS write error.

    Inside a write (``strict=False``) every OS error counts, and a library's bare "write failed" too. Elsewhere
    (``strict=True``) only errors that can only come from writing: disk full, quota, file size, read-only."""
    if isinstance(exc, WriteError):
        return exc
    if isinstance(exc, CompressorError) or not isinstance(exc, Exception):
        return None
    code = os_errno(exc)
    if strict and code not in (*ROOM, errno.EROFS):
        return None
    if code is None and not isinstance(exc, OSError) and not _failed_write(exc):
        return None
    filename = getattr(exc, "filename", None)
    target = Path(filename) if filename else (Path(path) if path else None)
    detail = ""
    if code is None and not isinstance(exc, OSError):  # torch's zip writer says only "unexpected pos ..."
        detail = "the write failed (is the disk full?)"
    elif code not in REASONS:
        detail = getattr(exc, "strerror", None) or (str(exc).splitlines()[0][:200] if str(exc) else "")
    return WriteError(what or (str(target) if target else "a file"), target, code, detail)


@contextmanager
def writing(what: str, path: Path | str | None = None) -> Iterator[None]:
    """Turn an OS write error raised inside into a :class:`WriteError` about ``what`` (at ``path``)."""
    try:
        yield
    except WriteError as e:  # raised by an inner write (one file of this artifact): name the artifact
        e.what, e.path = what, Path(path) if path else e.path
        raise
    except Exception as e:
        err = as_write_error(e, what, path)
        if err is None:
            raise
        raise err from e


def run_failure(e: BaseException, run_dir: Path, doing: str) -> WriteError | None:
    """A disk-full / read-only error from anywhere in a run (``doing``: what it was doing), as one line that
    says how to continue it; None for any other error."""
    err = as_write_error(e, f"{doing}'s output", run_dir, strict=not isinstance(e, WriteError))
    if err is not None:
        err.resume_dir = Path(run_dir)
    return err


class QuietFileHandler(logging.FileHandler):
    """A log file that stops quietly when it cannot be written (disk full): the console still shows everything,
    and the error that ends the run says what happened."""

    def handleError(self, record) -> None:
        self.close()
        self.emit = lambda record: None
