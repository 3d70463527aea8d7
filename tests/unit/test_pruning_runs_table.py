"""benchmarks/pruning_runs.py reads run directories honestly: target verdict, sparsity at each evaluation, missing runs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("pruning_runs", ROOT / "benchmarks" / "pruning_runs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fake_run(folder: Path, student_dev: float, status: str = "complete") -> Path:
    folder.mkdir(parents=True)
    (folder / "status").write_text(status + "\n")
    curve = [{"step": 50, "sparsity": 0.3}, {"step": 100, "sparsity": 0.7}, {"step": 150, "sparsity": 0.8}]
    layers = [
        {"name": "a.weight", "params": 10, "zeros": 6, "sparsity": 0.6},
        {"name": "b.weight", "params": 10, "zeros": 9, "sparsity": 0.9},
    ]
    stage = {
        "stage": "distill",
        "seconds": 600.0,
        "steps": 200,
        "best_step": 200,
        "student": {"layers": 3},
        "history": [{"step": 100, "eval": {"accuracy": 0.80}}, {"step": 200, "eval": {"accuracy": student_dev}}],
        "prune": {
            "schedule": {"type": "cubic", "start": 0, "end": 150, "every": 50},
            "scope": "global",
            "criterion": "magnitude",
            "sparsity": 0.8,
            "params": 20,
            "curve": curve,
            "layers": layers,
        },
    }
    art = lambda acc: {"metrics": {"dev": {"accuracy": acc}}, "size_bytes": 2**20, "gzip_bytes": 2**19}  # noqa: E731
    metrics = {"stages": [stage], "artifacts": {"baseline": art(0.90), "pytorch": art(student_dev), "int8": art(student_dev)}}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_verdict_and_curve_come_from_the_run(tmp_path):
    mod = _script()
    passing = mod.summarise(_fake_run(tmp_path / "a", 0.88))
    failing = mod.summarise(_fake_run(tmp_path / "b", 0.85))
    assert passing["meets_target"] and abs(passing["share_of_teacher"] - 0.88 / 0.90) < 1e-12  # 97.8 %
    assert not failing["meets_target"]  # 94.4 % of the teacher
    assert [e["sparsity"] for e in passing["evals"]] == [0.7, 0.8]  # the logged sparsity at or before each eval step
    text = mod.render([passing, failing], ["sst2-prune80-ofa"])
    assert "| yes |" in text and "| **no** |" in text and "Not run (or incomplete) here: sst2-prune80-ofa." in text
    assert "from 60 % to 90 % over 2 matrices" in text


def test_incomplete_runs_are_not_read(tmp_path):
    assert _script().summarise(_fake_run(tmp_path / "c", 0.88, status="running")) is None
