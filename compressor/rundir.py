"""The run directory: atomic writes, a status file, refusal to clobber."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path
from typing import Any

from compressor.errors import RunDirError

STATUS = "status"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a fully written directory into place (the old one, if any, goes only after)."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old")
        if old.exists():
            shutil.rmtree(old)
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_status(run_dir: Path) -> str:
    p = Path(run_dir) / STATUS
    if not p.is_file():
        return "unknown"
    return p.read_text(encoding="utf-8", errors="replace").strip() or "unknown"


def write_status(run_dir: Path, status: str) -> None:
    atomic_write_text(Path(run_dir) / STATUS, status.replace("\n", " ") + "\n")


def prepare_run_dir(run_dir: Path, force: bool) -> None:
    """Create ``run_dir``; an existing one is kept unless ``force`` (then it is emptied)."""
    if run_dir.exists():
        if not run_dir.is_dir():
            raise RunDirError(f"{run_dir}: exists and is not a directory")
        if any(run_dir.iterdir()):
            if not force:
                raise RunDirError(
                    f"{run_dir}: already exists ({read_status(run_dir)}); use --force to replace it or --resume to continue it"
                )
            for child in run_dir.iterdir():
                shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
    run_dir.mkdir(parents=True, exist_ok=True)


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
