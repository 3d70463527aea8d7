"""OS write errors (disk full, read-only, file-size limit) become one clear line; a failed write leaves the
previous file or folder as it was."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap

import pytest

import compressor.core.rundir as R
from compressor.core.errors import CompressorError
from compressor.core.writeerrors import WriteError, as_write_error, os_errno, run_failure, writing


class FakeSafetensorError(Exception):  # what safetensors raises: no errno, the OS error in the text
    pass


def test_os_errno_reads_errors_and_their_wrappers():
    assert os_errno(OSError(errno.ENOSPC, "No space left on device")) == errno.ENOSPC
    assert os_errno(FakeSafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")) == 28
    assert os_errno(Exception("Read-only file system (os error 30)")) == errno.EROFS
    try:
        try:
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        except OSError as inner:
            raise ValueError("Failed to find proper ai.onnx domain") from inner  # a library that hid the cause
    except ValueError as e:
        assert os_errno(e) == errno.EDQUOT
    assert os_errno(ValueError("bad value")) is None


def test_only_write_errors_are_translated():
    full = OSError(errno.ENOSPC, "No space left on device", "/x/model.onnx")
    err = as_write_error(full, strict=True)
    assert isinstance(err, WriteError) and err.code == errno.ENOSPC and str(err.path) == "/x/model.onnx"
    assert as_write_error(OSError(errno.EACCES, "Permission denied"), strict=True) is None  # could be a read
    assert as_write_error(OSError(errno.EACCES, "Permission denied"), "x", "/x") is not None  # inside a write it is one
    assert as_write_error(ValueError("no"), "x", "/x") is None
    assert as_write_error(CompressorError("user error"), "x", "/x") is None
    assert as_write_error(
        RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"), "the checkpoint", "/x"
    ).detail.startswith("the write failed")


def test_the_message_says_what_why_room_and_how_to_continue(tmp_path):
    err = as_write_error(
        OSError(errno.ENOSPC, "No space left on device"), "the finetune checkpoint at step 20", tmp_path / "checkpoints" / "train"
    )
    err.resume_dir = tmp_path
    text = str(err)
    assert text.startswith(
        f"could not write the finetune checkpoint at step 20 ({tmp_path / 'checkpoints' / 'train'}): no space left on device; "
    )
    assert " free on that disk; the last checkpoint is intact: free some space, then " in text
    assert f"`compressor run --resume {tmp_path}` continues from it" in text
    assert "\n" not in text and err.exit_code == 2
    ro = run_failure(
        OSError(errno.EROFS, "Read-only file system", str(tmp_path / "onnx" / "m.onnx")), tmp_path, "stage 1 (export)"
    )
    assert "read-only file system" in str(ro) and "make the folder writable, then `compressor run --resume" in str(ro)
    assert run_failure(OSError(errno.ENOENT, "No such file"), tmp_path, "loading") is None  # not a write error


def test_an_outer_write_names_what_an_inner_one_failed_at(tmp_path):
    with pytest.raises(WriteError) as got:
        with writing("the baseline model", tmp_path / "baseline"):
            with writing(str(tmp_path / "baseline" / "source.json"), tmp_path / "baseline" / "source.json"):
                raise OSError(errno.ENOSPC, "No space left on device")
    assert got.value.what == "the baseline model" and got.value.path.name == "baseline"


def _fail_half_way(fd, data, path):
    os.write(fd, data[: len(data) // 2])  # half the bytes made it: the temporary file is partial
    os.close(fd)
    raise OSError(errno.ENOSPC, "No space left on device")


def test_atomic_write_keeps_the_previous_file_when_the_disk_fills(tmp_path, monkeypatch):
    target = tmp_path / "metrics.json"
    R.atomic_write_json(target, {"v": 1})
    monkeypatch.setattr(R, "_write_file", _fail_half_way)
    with pytest.raises(WriteError, match=r"could not write .*metrics\.json: no space left on device; .* free"):
        R.atomic_write_json(target, {"v": 2, "pad": "x" * 1000})
    assert target.read_text() == '{\n  "v": 1\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no partial temporary file left


def test_replace_dir_puts_the_old_folder_back_when_the_move_fails(tmp_path, monkeypatch):
    final = tmp_path / "model"
    final.mkdir()
    (final / "w").write_text("old")
    tmp = R.tmp_sibling(final)
    (tmp / "w").write_text("new")
    real = os.replace

    def replace(src, dst):
        if os.fspath(src) == os.fspath(tmp):
            raise OSError(errno.EROFS, "Read-only file system")
        return real(src, dst)

    monkeypatch.setattr(R.os, "replace", replace)
    with pytest.raises(WriteError, match="read-only file system"):
        R.replace_dir(tmp, final)
    assert (final / "w").read_text() == "old" and not (tmp_path / ".model.old").exists()


def test_recover_dir_after_a_death_between_the_two_renames(tmp_path):
    final = tmp_path / "train"
    old = tmp_path / ".train.old"
    old.mkdir()
    (old / "trainer_state.json").write_text("{}")
    R.recover_dir(final)
    assert (final / "trainer_state.json").is_file() and not old.exists()


LIMITED = textwrap.dedent("""
    import resource, signal, sys, torch
    from safetensors.torch import save_file
    from compressor.core.writeerrors import writing, WriteError
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # over the limit: EFBIG instead of a signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
    big = {"w": torch.zeros(100000)}
    for name, save in (("safetensors", lambda p: save_file(big, p)), ("torch", lambda p: torch.save(big, p))):
        try:
            with writing(f"the {name} file", sys.argv[1] + "/" + name):
                save(sys.argv[1] + "/" + name)
        except WriteError as e:
            print(type(e.__cause__).__name__, "|", e)
""")


def test_real_library_write_errors_are_caught(tmp_path):
    """A file-size limit makes the OS refuse the write for real: safetensors (SafetensorError) and torch.save
    (a RuntimeError without errno) both end as a WriteError."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    res = subprocess.run([sys.executable, "-c", LIMITED, str(tmp_path)], capture_output=True, text=True, env=env, timeout=120)
    lines = res.stdout.strip().splitlines()
    assert len(lines) == 2, res.stdout + res.stderr
    assert lines[0].startswith("SafetensorError | could not write the safetensors file")
    assert "file too large" in lines[0]
    assert lines[1].startswith("RuntimeError | could not write the torch file")
    assert "the write failed" in lines[1] and "free on that disk" in lines[1]
