"""The run directory: atomic writes, a status file, refusal to clobber.

Every artifact is written to a temporary name beside its final one and moved into place only once complete,
so a crash or a full disk leaves the previous version, never half of a new one; an OS error while writing
becomes a :class:`~compressor.core.writeerrors.WriteError` (one line: what, why, room left)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

from compressor.core.errors import RunDirError
from compressor.core.runlock import LOCK_NAME, holder
from compressor.core.writeerrors import WriteError, writing

STATUS = "status"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    with writing(str(path), path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            _write_file(fd, data, path)
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _write_file(fd: int, data: bytes, path: Path) -> None:
    """Write ``data`` (meant for ``path``) to the temporary file open as ``fd``, flush it to disk and close it.

    Every single-file artifact goes through here: the fault-injection tests replace it to fail a chosen write."""
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def atomic_write_onnx(model, path: Path) -> None:
    """Write an ONNX ModelProto to ``path`` in one step: a single file, or past protobuf's 2 GB limit the graph
    with its weights in ``<name>.data`` beside it (both moved into place only once fully written)."""
    import onnx

    path = Path(path)
    if model.ByteSize() < 1_800_000_000:
        atomic_write_bytes(path, model.SerializeToString())
        return
    with writing(str(path), path):
        tmp = tmp_sibling(path)
        try:
            onnx.save(model, str(tmp / path.name), save_as_external_data=True, location=f"{path.name}.data")
            for f in tmp.iterdir():
                if f.name != path.name:
                    f.replace(path.parent / f.name)
            (tmp / path.name).replace(path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def tmp_sibling(path: Path) -> Path:
    """A fresh temporary directory beside ``path``, for writing a multi-file artifact."""
    with writing(str(path), path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a fully written directory into place (the old one, if any, goes only after; back if the move fails)."""
    old = None
    with writing(str(final), final):
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(final, old)
        try:
            os.replace(tmp, final)
        except BaseException:
            if old is not None and not final.exists():
                os.replace(old, final)
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextmanager
def removed_on_error(tmp: Path) -> Iterator[Path]:
    """A temporary folder that a failed write removes (so a full disk gets its room back)."""
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def recover_dir(final: Path) -> None:
    """Put back a directory that :func:`replace_dir` had moved aside when the process died before the new one
    took its place (a window of two renames)."""
    old = final.with_name(f".{final.name}.old")
    if not final.exists() and old.is_dir():
        os.replace(old, final)


def read_status(run_dir: Path) -> str:
    """``complete``, ``failed: reason``, ``running`` (a live process holds the folder) or ``interrupted`` (the file
    still says running, but its process is gone: killed, or the machine went down)."""
    p = Path(run_dir) / STATUS
    if not p.is_file():
        return "unknown"
    status = p.read_text(encoding="utf-8", errors="replace").strip() or "unknown"
    if status == "running" and holder(run_dir) is None:
        return "interrupted"
    return status


def describe_status(run_dir: Path) -> str:
    """The status in words, with who runs it or how to continue it."""
    status = read_status(run_dir)
    if status == "running":
        owner = holder(run_dir)
        return f"running, {owner.describe()}" if owner is not None else status
    if (status == "interrupted" or status.startswith("failed")) and "--resume" not in status:
        return f"{status} — resume with `compressor run --resume {run_dir}`"
    return status


def write_status(run_dir: Path, status: str, best_effort: bool = False) -> None:
    """Write the status file; ``best_effort``: a failure is recorded if the disk lets us (if not, the status still
    reads ``interrupted`` once the run's process is gone)."""
    try:
        atomic_write_text(Path(run_dir) / STATUS, status.replace("\n", " ") + "\n")
    except WriteError:
        if not best_effort:
            raise


def refuse_existing(run_dir: Path, force: bool) -> list[Path]:
    """Refuse a run folder that holds a run unless ``force``; returns what ``force`` would remove."""
    _check_parents(run_dir)
    if not run_dir.exists():
        return []
    if not run_dir.is_dir():
        raise RunDirError(f"{run_dir}: exists and is not a directory")
    children = [c for c in run_dir.iterdir() if c.name != LOCK_NAME]  # the lock belongs to whoever runs it
    if children and not force:
        raise RunDirError(
            f"{run_dir}: already exists ({describe_status(run_dir)}); use --force to replace it or --resume to continue it"
        )
    if children:
        ensure_replaceable(run_dir, hint="--force replaces only run directories; choose another --output or run name")
    return children


RUN_MARKERS = ("run.json", STATUS)  # files every run directory compressor creates carries


def ensure_replaceable(
    folder: Path,
    markers: tuple[str, ...] = RUN_MARKERS,
    what: str = "a compressor run directory",
    hint: str = "choose another output folder or move those files away",
) -> None:
    """Refuse to replace or write into ``folder`` when it holds files and none of ``markers`` (not made by compressor).

    The one check behind ``run --force``, ``compare -o`` and ``export -o``: a folder of someone's files is never
    emptied or overwritten, whatever the flags."""
    folder = Path(folder)
    if not folder.exists():
        return
    if not folder.is_dir():
        raise RunDirError(f"{folder}: exists and is not a directory")
    children = sorted(p.name for p in folder.iterdir() if p.name != LOCK_NAME)  # a run's lock is not the user's file
    if children and not any((folder / m).exists() for m in markers):
        shown = ", ".join(children[:3]) + (f" and {len(children) - 3} more" if len(children) > 3 else "")
        raise RunDirError(f"{folder}: not {what} (it holds {shown}; no {' or '.join(markers)}); refusing to touch it: {hint}")


def prepare_run_dir(run_dir: Path, force: bool) -> None:
    """Create ``run_dir``; an existing one is kept unless ``force``, and then only a run directory is emptied.
    Call it holding the lock."""
    for child in refuse_existing(run_dir, force):
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)


def _check_parents(path: Path) -> None:
    """The nearest existing folder above ``path`` must be a folder (``-o`` naming a file is a user mistake)."""
    for parent in Path(path).absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise RunDirError(f"{parent}: exists and is not a directory (it cannot hold the run directory {path})")
            return


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence third-party chatter (prints to stdout, root-logger warnings) around a call."""
    import io
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)
