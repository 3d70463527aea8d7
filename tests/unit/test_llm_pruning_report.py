"""benchmarks/llm_pruning_report.py: the targets are computed from the run's rows (not typed), and the committed
LLM_PRUNING.md is what its JSON renders to."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _report():
    spec = importlib.util.spec_from_file_location("llm_pruning_report", ROOT / "benchmarks" / "llm_pruning_report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _row(method: str, pattern: str, pruned: float, lora: float, after: float = 0.5, violations: int = 0) -> dict:
    row = {
        "model": "smollm2",
        "method": method,
        "pattern": pattern,
        "ppl_pruned": pruned,
        "ppl_lora": lora,
        "sparsity": {"sparsity": 0.5},
        "sparsity_after_merge": {"sparsity": after},
    }
    if pattern == "2:4":
        row["nm_violations_after_merge"] = violations
    return row


def test_targets_follow_the_rows():
    mod = _report()
    rows = [
        _row("magnitude", "unstructured", 60.0, 50.0),
        _row("wanda", "unstructured", 30.0, 25.0),  # recovers (60-30)/(60-10) = 60 %
        _row("sparsegpt", "unstructured", 45.0, 46.0),  # recovers 30 %; LoRA made it worse
        _row("magnitude", "2:4", 100.0, 90.0),
        _row("wanda", "2:4", 80.0, 70.0, after=0.5001),  # the merge regrew weights
        _row("sparsegpt", "2:4", 40.0, 35.0, violations=3),  # a group of 4 with 3 non-zeros
    ]
    kd = [
        {"variant": "kd-full", "ppl": 100.0, "steps": 10},
        {"variant": "ce-full", "ppl": 110.0, "steps": 10},
        {"variant": "kd-lora", "ppl": 120.0, "steps": 10},
        {"variant": "ce-lora", "ppl": 115.0, "steps": 10},
    ]
    got = {t["target"]: t for t in mod.targets({"dense_ppl": {"smollm2": 10.0}, "rows": rows, "kd": {"rows": kd}})}
    recover = "recovers >= half of magnitude's perplexity increase"
    assert got[f"smollm2 wanda unstructured: {recover}"]["met"]
    assert got[f"smollm2 wanda unstructured: {recover}"]["measured"].startswith("60 %")
    assert not got[f"smollm2 sparsegpt unstructured: {recover}"]["met"]
    assert got[f"smollm2 sparsegpt unstructured: {recover}"]["binding"]
    assert not got[f"smollm2 wanda 2:4: {recover}"]["binding"]  # the target is unstructured; 2:4 is reported
    lora = "LoRA lowers perplexity, sparsity exact after the merge"
    assert got[f"smollm2 wanda unstructured: {lora}"]["met"]
    assert not got[f"smollm2 sparsegpt unstructured: {lora}"]["met"]
    assert not got[f"smollm2 wanda 2:4: {lora}"]["met"]
    assert not got[f"smollm2 sparsegpt 2:4: {lora}"]["met"]
    assert got["KD student (full) beats its non-KD twin"]["met"]
    assert not got["KD student (lora) beats its non-KD twin"]["met"]


def test_committed_markdown_is_the_json_rendered():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        mod = _report()
        res = json.loads((ROOT / "benchmarks" / "llm_pruning.json").read_text())
        assert mod.targets(res) == res["targets"]  # the verdicts stored are the ones the rows give
        assert (ROOT / "benchmarks" / "LLM_PRUNING.md").read_text() == mod.render(res)
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
