"""Tokenized splits and the DataLoaders that batch them (dynamic padding)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from compressor.data.splits import Split


class Encoded:
    """A tokenized split: one dict of id lists per example."""

    def __init__(self, features: list[dict[str, list[int]]], labels: np.ndarray | None):
        self.features = features
        self.labels = labels

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = dict(self.features[i])
        if self.labels is not None:
            item["labels"] = int(self.labels[i])
        return item


def encode_split(split: Split, tokenizer, max_length: int) -> Encoded:
    if split.texts and isinstance(split.texts[0], tuple):
        a, b = zip(*split.texts)
        enc = tokenizer(list(a), list(b), truncation=True, max_length=max_length)
    else:
        enc = tokenizer(list(split.texts), truncation=True, max_length=max_length)
    keys = list(enc.keys())
    feats = [{k: enc[k][i] for k in keys} for i in range(len(split))]
    return Encoded(feats, split.labels)


def encode_blocks(blocks: np.ndarray) -> Encoded:
    feats = [{"input_ids": b.tolist(), "attention_mask": [1] * len(b)} for b in blocks]
    return Encoded(feats, None)


def concat(a: Encoded, b: Encoded, b_label: int = -100) -> Encoded:
    """``a`` then ``b``; rows of ``b`` without labels get ``b_label`` (ignored by the hard-label loss)."""
    la = a.labels if a.labels is not None else np.full(len(a), b_label, dtype=np.int64)
    lb = b.labels if b.labels is not None else np.full(len(b), b_label, dtype=np.int64)
    return Encoded(a.features + b.features, np.concatenate([la, lb]))


def make_loader(
    encoded: Encoded, tokenizer, batch_size: int, shuffle: bool, seed: int = 0, task: str = "sequence-classification"
):
    """A DataLoader with dynamic padding. Eval loaders sort by length to waste less padding."""
    import torch
    from torch.utils.data import DataLoader

    def collate(items: list[dict]) -> dict[str, torch.Tensor]:
        batch = tokenizer.pad([{k: v for k, v in it.items() if k != "labels"} for it in items], return_tensors="pt")
        if task == "causal-lm":
            labels = batch["input_ids"].clone()
            labels[batch["attention_mask"] == 0] = -100
            batch["labels"] = labels
        elif "labels" in items[0]:
            batch["labels"] = torch.tensor([it["labels"] for it in items], dtype=torch.long)
        return dict(batch)

    if shuffle:
        gen = torch.Generator()
        gen.manual_seed(seed)
        return DataLoader(encoded, batch_size=batch_size, shuffle=True, collate_fn=collate, generator=gen)
    order = sorted(range(len(encoded)), key=lambda i: len(encoded.features[i]["input_ids"]))
    # a generator of its own: iterating an evaluation loader must not draw from the global RNG that training uses
    # (an evaluation between two steps would otherwise change the next step's dropout, and an interrupted one the resume)
    return DataLoader(
        torch.utils.data.Subset(encoded, order),
        batch_size=batch_size,
        shuffle=False,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(0),
    )
