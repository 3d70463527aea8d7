"""Our own causal LM from nothing (compressor/scratch.py) and the target arithmetic of benchmarks/llm_bench.py."""

from __future__ import annotations

import importlib.util
import json

from tests.conftest import ROOT


def test_scratch_makes_a_trainable_folder(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from compressor.scratch import make

    text = tmp_path / "t.txt"
    body = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 40
    text.write_text(body + "ZYXWVU qqq\n" * 5)  # the tail is not seen by the tokenizer
    out = make(
        text, tmp_path / "m", train_fraction=0.9, vocab_size=300, layers=1, hidden=32, heads=2, kv_heads=2, intermediate=64
    )
    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert type(model).__name__ == "LlamaForCausalLM" and model.config.vocab_size == len(tok) <= 300
    ids = tok("hear me speak. ZYXWVU", add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == "hear me speak. ZYXWVU"  # byte-level: any text round-trips
    assert len(tok("ZYXWVU")["input_ids"]) > 1  # never merged: the tokenizer saw only the first 90 %
    assert json.loads((out / "scratch.json").read_text())["train_fraction"] == 0.9


def _bench_module():
    spec = importlib.util.spec_from_file_location("llm_bench", ROOT / "benchmarks" / "llm_bench.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_targets_are_ratios_of_the_same_run():
    bench = _bench_module()
    rows = {
        "torch-fp32": {"decode_tokens_per_s": 10.0, "perplexity": 100.0},
        "int4-rtn": {"decode_tokens_per_s": 30.0, "perplexity": 104.0},
        "int4-awq": {"decode_tokens_per_s": 45.0, "perplexity": 102.0},
        "int4-awq-lmhead": {"decode_tokens_per_s": 41.0, "perplexity": 103.0},
        "fused-int4-rtn": {"decode_tokens_per_s": 44.0, "perplexity": 101.0},
        "fused-int4-awq": {"decode_tokens_per_s": 40.0, "perplexity": 101.5},
        "genai-builder-int4": {"decode_tokens_per_s": 50.0, "perplexity": 101.0},
    }
    t = bench.targets({"tinyshakespeare": {"rows": rows}})["tinyshakespeare"]
    assert t["best_int4"] == "int4-awq"  # the fastest of our INT4 rows, whichever graph
    assert t["best_int4_vs_builder_decode"] == {"ratio": 0.9, "target": ">= 1.0", "met": False}
    assert t["best_int4_vs_torch_fp32_decode"]["ratio"] == 4.5 and t["best_int4_vs_torch_fp32_decode"]["met"]
    assert t["int4-awq_perplexity_vs_fp32"]["relative"] == 0.02 and t["int4-awq_perplexity_vs_fp32"]["met"]
    assert t["int4-awq_beats_int4-rtn_perplexity"]["met"]
    assert not t["fused-int4-awq_beats_fused-int4-rtn_perplexity"]["met"]  # each AWQ row against RTN on its graph
    assert "fused-int4-awq-all_beats_fused-int4-rtn-all_perplexity" not in t  # rows not measured: no target line
    rows["fused-int4-rtn-all"] = {"decode_tokens_per_s": 60.0, "perplexity": 105.0}
    t = bench.targets({"smollm2": {"rows": rows}})["smollm2"]
    assert t["best_int4"] == "fused-int4-rtn-all" and t["best_int4_vs_builder_decode"]["met"]
