"""--force replaces only what compressor made; compare -o and export -o never write into someone's folder (issue 17)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from compressor.core.errors import RunDirError
from compressor.core.rundir import ensure_replaceable, prepare_run_dir
from tests.conftest import ROOT, write_recipe

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "200"}


def _cli(*args, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "compressor", *map(str, args)], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300
    )


def _thesis(folder: Path) -> dict[Path, str]:
    files = {folder / "mythesis" / "chapter1.tex": "\\chapter{One}\n", folder / "notes.txt": "do not lose me\n"}
    for p, text in files.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return files


def _intact(files: dict[Path, str]) -> bool:
    return all(p.is_file() and p.read_text() == text for p, text in files.items())


def test_force_refuses_a_folder_compressor_did_not_make(tmp_path):
    files = _thesis(tmp_path / "thesis")
    with pytest.raises(RunDirError, match="not a compressor run directory.*mythesis, notes.txt"):
        prepare_run_dir(tmp_path / "thesis", force=True)
    assert _intact(files)
    run = tmp_path / "run"  # a run directory (status / run.json) is replaced
    run.mkdir()
    (run / "status").write_text("failed: x\n")
    (run / "old.txt").write_text("x")
    prepare_run_dir(run, force=True)
    assert run.is_dir() and not any(run.iterdir())
    ensure_replaceable(tmp_path / "missing")  # nothing there: nothing to refuse
    (tmp_path / "empty").mkdir()
    ensure_replaceable(tmp_path / "empty")


def test_run_force_on_a_foreign_folder_exits_2_and_keeps_the_files(tiny_dir, tmp_path):
    recipe = write_recipe(
        tmp_path,
        f"""
name: mythings
model: {{path: {tiny_dir / "bert"}}}
data: {{train: {tiny_dir / "sent.csv"}, max_length: 32}}
bench: {{enabled: false}}
""",
    )
    files = _thesis(tmp_path / "out" / "mythings")
    r = _cli("run", recipe, "-o", tmp_path / "out", "--force")
    assert r.returncode == 2, r.stdout + r.stderr
    err = " ".join(r.stderr.split())
    assert "not a compressor run directory" in err and "--force replaces only run directories" in err
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert _intact(files) and sorted(p.name for p in (tmp_path / "out" / "mythings").iterdir()) == ["mythesis", "notes.txt"]


def test_compare_and_export_refuse_foreign_output_folders(tiny_dir, tmp_path):
    files = _thesis(tmp_path / "docs")
    r = _cli("export", tiny_dir / "bert", "-o", tmp_path / "docs", "--force")
    assert r.returncode == 2 and "not an export folder" in " ".join(r.stderr.split()), r.stderr
    r = _cli("compare", tmp_path, "-o", tmp_path / "docs")  # checked before the runs are read
    assert r.returncode == 2 and "not an earlier compare output" in " ".join(r.stderr.split()), r.stderr
    assert _intact(files) and sorted(p.name for p in (tmp_path / "docs").iterdir()) == ["mythesis", "notes.txt"]
