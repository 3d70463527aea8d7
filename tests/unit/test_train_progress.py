"""Progress lines (no terminal): each one shows the mean loss of its own steps, not a stale one (issue 20)."""

from __future__ import annotations

import logging
import re

import pytest


def test_every_progress_line_shows_the_loss_since_the_previous_line(caplog):
    torch = pytest.importorskip("torch")
    from compressor.recipe.schema import TrainConfig
    from compressor.train.loop import train

    model = torch.nn.Linear(2, 1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.zeros(40, 2)), batch_size=1)
    seen: list[float] = []

    def loss_fn(m, batch):  # a loss that is its own step number (times zero weights): known, different every step
        value = float(len(seen) + 1)
        seen.append(value)
        return (m(batch[0]).sum() * 0.0 + value), {}

    cfg = TrainConfig(max_steps=40, lr=1e-3, eval_every=1000, mixed_precision="no")
    with caplog.at_level(logging.INFO, logger="compressor"):
        train(model, loader, cfg, loss_fn, name="toy", device="cpu")
    lines = [r.getMessage() for r in caplog.records if re.match(r"toy: step \d+/40", r.getMessage())]
    got = [(int(re.search(r"step (\d+)/", ln).group(1)), float(re.search(r"loss ([\d.]+)", ln).group(1))) for ln in lines]
    assert [s for s, _ in got] == list(range(4, 41, 4))  # every 10 %
    prev = 0
    for step, loss in got:  # the mean of the losses of steps prev+1..step: 1..4 -> 2.5, 5..8 -> 6.5, ...
        assert loss == pytest.approx(sum(range(prev + 1, step + 1)) / (step - prev)), (step, loss)
        prev = step
