"""Sample sentences for `compressor export`'s parity check when no data set is given.

64 English sentences (by default) made from review-like clauses with a fixed seed: a few words up to
long rows that fill ``max_length``, mixed positive / negative / neutral wording, so that in batches of
16 most rows are padded and the long ones are truncated. A representative sample for the parity check
(does the graph compute what PyTorch computes?), not a data set: it has no labels.
"""

from __future__ import annotations

import random

OPENERS = (
    "The film",
    "This phone",
    "The hotel",
    "Our dinner",
    "The book",
    "The service",
    "The update",
    "The concert",
    "The new album",
    "The course",
    "The game",
    "The apartment",
)
CLAUSES = (
    "was a delight from start to finish",
    "fell apart in the second half",
    "is neither good nor bad",
    "made me laugh more than I expected",
    "was slow, loud and overpriced",
    "exceeded every expectation we had",
    "had a few good moments",
    "felt rushed and careless",
    "is exactly what the reviews promised",
    "left us cold",
    "kept surprising me until the very last page",
    "could have been half as long",
    "deserves every award it will get",
    "was fine, I suppose",
    "broke after two days of ordinary use",
    "was warm, friendly and quick",
    "never quite found its voice",
    "is the best thing I have bought this year",
)
JOINERS = (", although", ", and", "; still,", ", but", ". On the other hand,", ", while")
SHORT = (
    "Terrible.",
    "ok",
    "What a pleasant surprise!",
    "Nothing about this worked for me.",
    "Loved it.",
    "Meh.",
    "Never again.",
    "Five stars.",
)


def sample_texts(n: int = 64, seed: int = 0) -> list[str]:
    """``n`` sentences of varied length: an eighth very short, an eighth long (dozens of clauses), the rest between."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 8 == 0:
            out.append(SHORT[(i // 8) % len(SHORT)])
            continue
        clauses = 12 + rng.randrange(8) if i % 8 == 7 else 1 + rng.randrange(4)
        text = f"{rng.choice(OPENERS)} {rng.choice(CLAUSES)}"
        for _ in range(clauses - 1):
            text += f"{rng.choice(JOINERS)} {rng.choice(OPENERS).lower()} {rng.choice(CLAUSES)}"
        out.append(text + ".")
    return out
