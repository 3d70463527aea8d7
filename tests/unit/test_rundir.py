"""The run directory (core/rundir.py): atomic writes, status, refusal to clobber; the lock as the run holds it.

Failure paths (full disk, a move that fails, a death between renames) are in test_write_errors.py; the lock's
multi-process cases in test_runlock.py. Here: the ordinary contract every writer relies on."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest

import compressor.core.rundir as R
from compressor.core.errors import RunDirError
from compressor.core.runlock import LOCK_NAME, LockSlot, RunLock, read_owner


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_atomic_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "deep" / "er" / "report.md"
    R.atomic_write_text(target, "first\n")
    R.atomic_write_text(target, "second\n")
    assert target.read_text() == "second\n" and _leftovers(target.parent) == []
    R.atomic_write_bytes(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"


def test_atomic_write_honours_the_umask(tmp_path):
    old = os.umask(0o027)
    try:
        R.atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640  # not mkstemp's 0600


def test_a_reader_never_sees_half_a_file(tmp_path):
    """While one thread rewrites a file, another only ever reads one complete version of it."""
    target = tmp_path / "metrics.json"
    versions = [json.dumps({"v": i, "pad": "x" * (20000 + i)}) for i in range(40)]
    R.atomic_write_text(target, versions[0])
    seen, done = set(), threading.Event()

    def read():
        while not done.is_set():
            seen.add(json.loads(target.read_text())["v"])  # a torn file would fail to parse

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for text in versions[1:]:
            R.atomic_write_text(target, text)
    finally:
        done.set()
        reader.join()
    assert seen <= set(range(40)) and json.loads(target.read_text())["v"] == 39 and _leftovers(tmp_path) == []


def test_atomic_write_json_converts_numpy_and_paths_and_refuses_the_rest(tmp_path):
    R.atomic_write_json(tmp_path / "m.json", {"a": np.int64(3), "b": np.float32(0.5), "c": np.arange(3), "d": tmp_path})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": 3, "b": 0.5, "c": [0, 1, 2], "d": str(tmp_path)}
    with pytest.raises(TypeError, match="not JSON serialisable: object"):
        R.atomic_write_json(tmp_path / "n.json", {"x": object()})
    assert not (tmp_path / "n.json").exists() and _leftovers(tmp_path) == []


def test_tmp_sibling_and_replace_dir_move_a_whole_folder_into_place(tmp_path):
    final = tmp_path / "model"
    final.mkdir()
    (final / "old.bin").write_text("old")
    tmp = R.tmp_sibling(final)
    assert tmp.parent == tmp_path and tmp.name.startswith(".model.")
    (tmp / "new.bin").write_text("new")
    R.replace_dir(tmp, final)
    assert sorted(p.name for p in final.iterdir()) == ["new.bin"] and _leftovers(tmp_path) == []


def test_removed_on_error_cleans_up_only_on_failure(tmp_path):
    kept = R.tmp_sibling(tmp_path / "a")
    with R.removed_on_error(kept):
        pass
    assert kept.is_dir()
    gone = R.tmp_sibling(tmp_path / "b")
    with pytest.raises(RuntimeError), R.removed_on_error(gone):
        raise RuntimeError("stage failed")
    assert not gone.exists()


def test_status_words(tmp_path):
    assert R.read_status(tmp_path) == "unknown"
    R.write_status(tmp_path, "failed: disk\nfull")
    assert (tmp_path / "status").read_text() == "failed: disk full\n"  # one line whatever the reason holds
    assert R.describe_status(tmp_path) == f"failed: disk full — resume with `compressor run --resume {tmp_path}`"
    R.write_status(tmp_path, "running")  # nobody holds the folder: the run's process is gone
    assert R.read_status(tmp_path) == "interrupted"
    R.write_status(tmp_path, "complete")
    assert R.read_status(tmp_path) == R.describe_status(tmp_path) == "complete"


def test_an_existing_run_is_refused_without_force_and_a_foreign_folder_always(tmp_path):
    run = tmp_path / "run"
    assert R.refuse_existing(run, force=False) == []  # nothing there yet
    R.prepare_run_dir(run, force=False)
    (run / "run.json").write_text("{}")
    R.write_status(run, "complete")
    with pytest.raises(RunDirError, match="already exists \\(complete\\); use --force"):
        R.refuse_existing(run, force=False)
    R.prepare_run_dir(run, force=True)
    assert list(run.iterdir()) == []
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "a.jpg").write_text("x")
    with pytest.raises(RunDirError, match="not a compressor run directory \\(it holds a.jpg; no run.json or status\\)"):
        R.prepare_run_dir(mine, force=True)
    assert (mine / "a.jpg").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="exists and is not a directory \\(it cannot hold the run directory"):
        R.refuse_existing(tmp_path / "file" / "run", force=True)


def test_a_folder_holding_only_a_lock_is_empty_and_the_lock_survives_force(tmp_path):
    run = tmp_path / "run"
    with RunLock.acquire(run) as lock:
        assert R.refuse_existing(run, force=False) == []
        (run / "status").write_text("running\n")
        R.prepare_run_dir(run, force=True)
        assert (run / LOCK_NAME).is_file() and not (run / "status").exists()
        assert read_owner(run).pid == os.getpid() and lock.note is None
    assert not (run / LOCK_NAME).exists()


def test_lock_slot_releases_in_one_place(tmp_path):
    slot = LockSlot()
    slot.release()  # nothing taken: nothing to do
    slot.take(tmp_path / "run")
    assert (tmp_path / "run" / LOCK_NAME).is_file() and slot.note is None
    slot.release()
    slot.release()  # idempotent
    assert not (tmp_path / "run" / LOCK_NAME).exists()
