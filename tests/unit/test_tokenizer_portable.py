"""Tokenizer folders written by compressor name a class transformers 4.x knows too (issue 18)."""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from compressor import testing as T
from compressor.models import load_tokenizer, save_tokenizer

# classes of transformers 5 whose names transformers 4.x's AutoTokenizer resolves (a "<name>Fast" class exists there,
# or the name itself): the WordPiece test tokenizer saves as BertTokenizer
KNOWN_TO_4X = {"PreTrainedTokenizerFast", "BertTokenizer", "BertTokenizerFast", "GPT2Tokenizer", "GPT2TokenizerFast"}


@pytest.mark.parametrize("kind", ["bpe", "wordpiece"])
def test_a_saved_tokenizer_names_a_class_both_transformers_lines_load(kind, tmp_path):
    src = T.write_bpe_tokenizer(tmp_path / "src") if kind == "bpe" else T.write_tokenizer(tmp_path / "src")
    tok = load_tokenizer(tmp_path / "src")
    if kind == "bpe":  # the problem: transformers 5 loads and re-saves it under a name 4.x does not have
        tok.save_pretrained(tmp_path / "plain")
        assert json.loads((tmp_path / "plain" / "tokenizer_config.json").read_text())["tokenizer_class"] == "TokenizersBackend"
    save_tokenizer(tok, tmp_path / "out")
    cfg = json.loads((tmp_path / "out" / "tokenizer_config.json").read_text())
    assert cfg["tokenizer_class"] in KNOWN_TO_4X
    assert "local_files_only" not in cfg and "is_local" not in cfg
    again = AutoTokenizer.from_pretrained(tmp_path / "out")
    text = "the movie was very good . w12 brilliant"
    assert again(text)["input_ids"] == tok(text)["input_ids"] == AutoTokenizer.from_pretrained(src)(text)["input_ids"]
