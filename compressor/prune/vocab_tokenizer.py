"""The tokenizer side of vocabulary trimming (compressor/prune/vocab.py): its ``tokenizer.json`` as a dict, and the
same tokenizer over the kept tokens only, numbered in their old order (vocabulary, added tokens, the special ids of
the post-processor and of the padding, ``tokenizer_config.json`` and ``vocab.txt`` alike)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from compressor.core.errors import ModelError


def tokenizer_json(tokenizer) -> dict:
    """The backend tokenizer's JSON; a ModelError unless its model is WordPiece."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    kind = json.loads(backend.to_str())["model"]["type"] if backend is not None else "no fast (tokenizers) backend"
    if kind != "WordPiece":
        raise ModelError(
            f"vocabulary trimming supports WordPiece (BERT-family) tokenizers; this one ({type(tokenizer).__name__}) is {kind}"
        )
    return json.loads(backend.to_str())


def _remap_post_processor(pp: Any, new_id: dict[int, int]) -> None:
    """Special token ids inside a post-processor (Template / Bert / Roberta processing, or a sequence of them)."""
    if isinstance(pp, list):
        for p in pp:
            _remap_post_processor(p, new_id)
    if not isinstance(pp, dict):
        return
    for spec in (pp.get("special_tokens") or {}).values():
        spec["ids"] = [new_id[i] for i in spec["ids"]]
    for key in ("sep", "cls"):
        if isinstance(pp.get(key), list) and len(pp[key]) == 2:
            pp[key][1] = new_id[pp[key][1]]
    _remap_post_processor(pp.get("processors"), new_id)


def remap_tokenizer(tokenizer, keep: Sequence[int]):
    """The same tokenizer over the kept tokens only, numbered in their old order."""
    from transformers import AutoTokenizer

    new_id = {old: new for new, old in enumerate(keep)}
    with tempfile.TemporaryDirectory(prefix="vocab-trim-") as tmp:
        tmp_dir = Path(tmp)
        tokenizer.save_pretrained(tmp_dir)
        tj = json.loads((tmp_dir / "tokenizer.json").read_text(encoding="utf-8"))
        vocab = tj["model"]["vocab"]
        tj["model"]["vocab"] = {t: new_id[i] for t, i in sorted(vocab.items(), key=lambda kv: kv[1]) if i in new_id}
        tj["added_tokens"] = [{**a, "id": new_id[a["id"]]} for a in tj.get("added_tokens") or [] if a["id"] in new_id]
        _remap_post_processor(tj.get("post_processor"), new_id)
        if tj.get("padding") and tj["padding"].get("pad_id") is not None:
            tj["padding"]["pad_id"] = new_id.get(tj["padding"]["pad_id"], 0)
        (tmp_dir / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False), encoding="utf-8")
        cfg_path = tmp_dir / "tokenizer_config.json"
        if cfg_path.is_file():
            tc = json.loads(cfg_path.read_text(encoding="utf-8"))
            if isinstance(tc.get("added_tokens_decoder"), dict):
                tc["added_tokens_decoder"] = {
                    str(new_id[int(k)]): v for k, v in tc["added_tokens_decoder"].items() if int(k) in new_id
                }
                cfg_path.write_text(json.dumps(tc, ensure_ascii=False, indent=2), encoding="utf-8")
        vocab_txt = tmp_dir / "vocab.txt"
        if vocab_txt.is_file():
            vocab_txt.write_text("".join(t + "\n" for t in tj["model"]["vocab"]), encoding="utf-8")
        new = AutoTokenizer.from_pretrained(str(tmp_dir))
        if new.pad_token is None and tokenizer.pad_token is not None:
            new.pad_token = tokenizer.pad_token
    return new
