"""The run folder's lock: one process per folder, a dead owner's lock taken over, and the status it implies."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap

import psutil
import pytest

from compressor.core.errors import RunDirError
from compressor.core.rundir import describe_status, prepare_run_dir, read_status, write_status
from compressor.core.runlock import LOCK_NAME, RunLock, holder, owner_alive, read_owner

HOLD = textwrap.dedent("""
    import sys
    from compressor.core.runlock import RunLock
    lock = RunLock.acquire(sys.argv[1])
    print("locked", flush=True)
    sys.stdin.readline()  # hold it until told to go
    lock.release()
""")


@pytest.fixture
def other_process(tmp_path):
    """Start a second Python process that locks a folder and holds it; yields (process, folder)."""
    procs = []

    def start(folder):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
        p = subprocess.Popen(
            [sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
        )
        procs.append(p)
        assert p.stdout.readline().strip() == "locked"
        return p

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def test_lock_names_its_owner_and_goes_on_release(tmp_path):
    run_dir = tmp_path / "run"
    lock = RunLock.acquire(run_dir)
    info = json.loads((run_dir / LOCK_NAME).read_text())
    assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
    assert info["started"] == pytest.approx(psutil.Process().create_time(), abs=1.0)
    assert lock.note is None and holder(run_dir) is None  # our own lock is nobody else's
    lock.release()
    lock.release()  # idempotent
    assert not (run_dir / LOCK_NAME).exists()
    RunLock.acquire(run_dir).release()  # free again


def test_a_second_process_is_refused_with_the_owner_pid(tmp_path, other_process):
    run_dir = tmp_path / "run"
    proc = other_process(run_dir)
    with pytest.raises(RunDirError, match=rf"in use by another compressor run \(PID {proc.pid}\b"):
        RunLock.acquire(run_dir)
    assert holder(run_dir).pid == proc.pid
    write_status(run_dir, "running")
    assert read_status(run_dir) == "running"
    assert describe_status(run_dir).startswith(f"running, PID {proc.pid}, started ")
    proc.stdin.write("go\n")
    proc.stdin.flush()
    proc.wait(timeout=30)
    assert not (run_dir / LOCK_NAME).exists()  # a clean exit leaves no lock behind
    with RunLock.acquire(run_dir) as lock:
        assert lock.note is None  # nothing to take over


def test_a_killed_owner_leaves_a_stale_lock_that_is_taken_over(tmp_path, other_process):
    run_dir = tmp_path / "run"
    proc = other_process(run_dir)
    write_status(run_dir, "running")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert read_owner(run_dir).pid == proc.pid  # the file stays: nobody removed it
    assert holder(run_dir) is None
    assert read_status(run_dir) == "interrupted"
    assert describe_status(run_dir) == f"interrupted — resume with `compressor run --resume {run_dir}`"
    with RunLock.acquire(run_dir) as lock:
        assert f"took over the lock of a run that is gone (PID {proc.pid}" in lock.note
        assert read_owner(run_dir).pid == os.getpid()


def test_a_reused_pid_does_not_count_as_the_owner(tmp_path):
    """Same host, the PID alive but started at another time: a different process now has that number."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    parent = psutil.Process(os.getppid())
    stale = {"pid": parent.pid, "host": socket.gethostname(), "started": parent.create_time() - 3600}
    (run_dir / LOCK_NAME).write_text(json.dumps(stale))
    assert owner_alive(read_owner(run_dir)) is False and holder(run_dir) is None
    with RunLock.acquire(run_dir) as lock:
        assert f"PID {parent.pid}" in lock.note


def test_a_live_owner_is_respected_even_without_the_kernel_lock(tmp_path):
    """The file names a process that runs (same PID, same start time) but holds no flock (the file was replaced):
    refuse rather than run two processes on one folder."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    parent = psutil.Process(os.getppid())
    live = {"pid": parent.pid, "host": socket.gethostname(), "started": parent.create_time()}
    (run_dir / LOCK_NAME).write_text(json.dumps(live))
    assert owner_alive(read_owner(run_dir)) is True
    with pytest.raises(RunDirError, match=rf"PID {parent.pid}"):
        RunLock.acquire(run_dir)


def test_an_owner_on_another_host_is_judged_by_the_kernel_lock(tmp_path, other_process):
    run_dir = tmp_path / "run"
    (run_dir).mkdir()
    (run_dir / LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": 1.0}))
    assert owner_alive(read_owner(run_dir)) is None
    assert holder(run_dir) is None  # nobody holds the flock: gone
    with RunLock.acquire(run_dir) as lock:
        assert "PID 1 on elsewhere" in lock.note


def test_prepare_run_dir_keeps_the_lock_and_says_interrupted(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    write_status(run_dir, "running")
    with pytest.raises(RunDirError, match=r"already exists \(interrupted — resume with `compressor run --resume"):
        prepare_run_dir(run_dir, force=False)
    with RunLock.acquire(run_dir) as lock:
        prepare_run_dir(run_dir, force=True)
        assert [p.name for p in run_dir.iterdir()] == [LOCK_NAME]
        assert read_owner(run_dir).pid == os.getpid() and lock.fd is not None


def test_a_path_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "run").write_text("x")
    with pytest.raises(RunDirError, match="exists and is not a directory"):
        RunLock.acquire(tmp_path / "run")
