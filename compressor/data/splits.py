"""Splits of a classification data set and how they are cut: the test / dev split off train, the selection
(validation) split, the sample limits."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from compressor.core.errors import DataError

log = logging.getLogger("compressor")


@dataclass
class Split:
    texts: list[Any]  # str, or (str, str) for sentence pairs
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.texts)

    def take(self, idx: np.ndarray | list[int]) -> Split:
        return Split([self.texts[i] for i in idx], None if self.labels is None else self.labels[np.asarray(idx, dtype=int)])


@dataclass
class Dataset:
    splits: dict[str, Split]
    label_names: list[str] | None = None
    sources: dict[str, str] = field(default_factory=dict)
    counts: dict[str, dict] = field(default_factory=dict)  # split -> rows read / dropped / split off / sampled out / used
    duplicates: dict = field(default_factory=dict)  # duplicates.dedupe's report
    duplicate_rows: list[dict] = field(default_factory=list)  # every row of a repeated text (duplicates.csv)

    @property
    def num_labels(self) -> int | None:
        return None if self.label_names is None else len(self.label_names)


def _split_off(split: Split, frac: float | int, seed: int, stratify: bool) -> tuple[Split, Split]:
    """Cut ``frac`` of the rows (a fraction, or a count when an int) off ``split``."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(split))
    strat = split.labels if (stratify and split.labels is not None and len(split)) else None
    if strat is not None:
        counts = np.bincount(strat)
        if counts[counts > 0].min() < 2:  # a class with one example cannot be on both sides
            strat = None
    try:
        try:
            keep, out = train_test_split(idx, test_size=frac, random_state=seed, stratify=strat)
        except ValueError:
            if strat is None:
                raise
            # e.g. fewer dev rows than classes: stratification is impossible, a random cut is not
            log.warning("cannot stratify a %s-row split of %d rows; splitting at random", frac, len(split))
            keep, out = train_test_split(idx, test_size=frac, random_state=seed)
    except ValueError as e:
        raise DataError(f"cannot split {len(split)} rows into train/dev/test: {e}") from None
    return split.take(sorted(keep)), split.take(sorted(out))


def _subsample(split: Split, n: int | None, seed: int) -> Split:
    if n is None or n >= len(split):
        return split
    rng = np.random.default_rng(seed)
    return split.take(sorted(rng.choice(len(split), size=n, replace=False)))


def _cut_validation(
    train: Split, frac: float, max_train: int | None, seed: int, stratify: bool, cap: int = 2000
) -> tuple[Split, Split]:
    """Hold out ``frac`` of the training rows used (stratified, at most ``cap``) as the selection split.

    When ``max_train`` leaves enough rows unused, the validation rows come from those and the training rows are
    exactly the ones ``_subsample`` picks without a validation split; otherwise they are cut from train."""
    used = min(len(train), max_train or len(train))
    k = min(cap, max(1, round(used * frac)))
    if max_train and len(train) - max_train >= k:
        rng = np.random.default_rng(seed)  # the same draw as _subsample
        chosen = np.sort(rng.choice(len(train), size=max_train, replace=False))
        rest = np.setdiff1d(np.arange(len(train)), chosen)
        _, val = _split_off(train.take(rest), k, seed, stratify)
        return train.take(chosen), val
    if k >= len(train):
        raise DataError(
            f"data.train: {len(train)} rows are too few to hold out a validation split "
            "(data.split.validation); add rows or set data.split.select_on: dev"
        )
    return _split_off(train, k, seed, stratify)
