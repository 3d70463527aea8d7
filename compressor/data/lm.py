"""Causal-LM data: raw text per split, tokenized and cut into blocks of ``data.max_length`` tokens."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from compressor.core.errors import DataError
from compressor.data.files import _fmt, _is_missing, check_texts, read_text
from compressor.data.sources import _resolve, is_dataset_spec, open_table, text_keys

if TYPE_CHECKING:
    from compressor.recipe.schema import DataConfig

log = logging.getLogger("compressor")


def lm_text(spec: str, cfg, base_dir: Path | None, field: str) -> str:
    """The raw text ``spec`` holds: a plain text file, or the (first) text column of a table or dataset, its rows
    joined by blank lines."""
    path = None if is_dataset_spec(spec, base_dir, field) else _resolve(spec, base_dir, field)
    if path is not None and _fmt(path, cfg.format) == "text" and getattr(cfg, "sep", None) is None:
        return read_text(path, cfg.encoding)
    table = open_table(spec, cfg, base_dir, field)
    col = text_keys(table, cfg)[0]
    check_texts(table.df, table.source, [col], allow_empty=True)
    return "\n\n".join(v for v in table.df[col] if not _is_missing(v))


def load_lm_text(cfg: DataConfig, base_dir: Path | None) -> dict[str, str]:
    """Raw text per split for a causal LM (see :func:`lm_text`)."""
    return {
        name: lm_text(getattr(cfg, name), cfg, base_dir, f"data.{name}")
        for name in ("train", "dev", "test")
        if getattr(cfg, name)
    }


def lm_blocks(text: str, tokenizer, block: int) -> np.ndarray:
    ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
    n = len(ids) // block
    if n == 0:
        raise DataError(f"text holds {len(ids)} tokens, fewer than one block of data.max_length={block}")
    return np.asarray(ids[: n * block], dtype=np.int64).reshape(n, block)


def load_causal_lm(
    cfg: DataConfig, base_dir: Path | None, tokenizer, seed: int, validation: float = 0.0
) -> dict[str, np.ndarray]:
    """Blocks per split; with ``validation`` > 0 a contiguous tail of the training blocks is the selection split."""
    texts = load_lm_text(cfg, base_dir)
    blocks = {name: lm_blocks(t, tokenizer, cfg.max_length) for name, t in texts.items()}
    total = len(blocks["train"])  # split fractions are of the whole file
    for name, frac in (("test", cfg.split.test), ("dev", cfg.split.dev)):
        if name not in blocks and frac > 0:
            tr = blocks["train"]
            k = max(1, int(round(total * frac)))
            if k >= len(tr):
                raise DataError(f"data.train: {len(tr)} blocks are too few to split off {name}")
            blocks["train"], blocks[name] = tr[:-k], tr[-k:]  # contiguous tail: no overlap
    if validation > 0:
        tr = blocks["train"]
        k = min(cfg.split.validation_max, max(1, int(round(len(tr) * validation))))
        if k >= len(tr):
            raise DataError(
                f"data.train: {len(tr)} blocks are too few to hold out a validation split "
                "(data.split.validation); add text or set data.split.select_on: dev"
            )
        blocks["train"], blocks["validation"] = tr[:-k], tr[-k:]
    rng = np.random.default_rng(seed)
    if cfg.max_train_samples and cfg.max_train_samples < len(blocks["train"]):
        log.info(
            "data.train: %d blocks of %d tokens, %d left out by data.max_train_samples, %d used",
            len(blocks["train"]),
            cfg.max_length,
            len(blocks["train"]) - cfg.max_train_samples,
            cfg.max_train_samples,
        )
        blocks["train"] = blocks["train"][np.sort(rng.choice(len(blocks["train"]), cfg.max_train_samples, replace=False))]
    for name in ("validation", "dev", "test"):
        if name in blocks and cfg.max_eval_samples:
            blocks[name] = blocks[name][: cfg.max_eval_samples]
    return blocks
