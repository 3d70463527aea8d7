"""The real batches every artifact of a run is checked against PyTorch on (parity).

Representative rather than convenient: the evaluation loader sorts rows by length, so its first batches are the
shortest rows of the split. Parity instead sees, from the dev split (else train):

* the longest rows (where positions, attention and accumulated rounding are widest);
* a padded batch mixing the longest and the shortest rows (padding on the side the tokenizer pads, as the task
  uses it: a row of a few tokens beside one of full length);
* a seeded random sample of the split.

The same rows every time for one run (seeded by the recipe's seed), so a fp32 export and its INT8 graph are
compared on the same inputs.
"""

from __future__ import annotations

import numpy as np

from compressor.pipeline.context import RunContext

PARITY_BATCH = 8


def parity_rows(lengths: list[int], batch_size: int = PARITY_BATCH, seed: int = 0) -> list[list[int]]:
    """Row indices of the parity batches, from each row's length: longest, long + short mixed, a random sample.

    A split of at most ``batch_size`` rows gives one batch of all of them; batches repeat no row set."""
    n = len(lengths)
    if n == 0:
        return []
    if n <= batch_size:
        return [list(range(n))]
    order = sorted(range(n), key=lambda i: (-lengths[i], i))  # longest first; ties by position, deterministic
    longest = order[:batch_size]
    half = batch_size // 2
    mixed = order[:half] + order[::-1][: batch_size - half]
    rng = np.random.default_rng(seed)
    sample = sorted(int(i) for i in rng.choice(n, size=batch_size, replace=False))
    out: list[list[int]] = []
    for rows in (longest, mixed, sample):
        if sorted(rows) not in [sorted(r) for r in out]:
            out.append(rows)
    return out


def parity_batches(ctx: RunContext, batch_size: int = PARITY_BATCH) -> list[dict]:
    """Real batches (dev split, else train) for parity checks: see the module docstring."""
    from compressor.data import Encoded, make_loader

    split = ctx.eval_split() or "train"
    enc = ctx.encoded.get(split)
    if enc is None or len(enc) == 0:
        return []
    lengths = [len(f["input_ids"]) for f in enc.features]
    out = []
    for rows in parity_rows(lengths, batch_size, ctx.seed):
        subset = Encoded([enc.features[i] for i in rows], None if enc.labels is None else enc.labels[rows])
        out.extend(make_loader(subset, ctx.tokenizer, len(rows), False, ctx.seed, ctx.task))
    return out
