"""One recipe, run twice on one machine, gives identical weights and metrics (issue 23: a new classification head
was initialised before seeding, so two quickstart runs differed)."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from compressor import testing as T
from compressor.pipeline.orchestrate import run
from tests.conftest import write_recipe


def test_two_runs_of_one_recipe_are_bit_identical(tiny_dir, tmp_path):
    # 2 labels on a 3-label checkpoint: the classification head is new (random) and a distilled student's
    # hidden-state projection too; both must come from the recipe's seed
    T.tiny_bert(tmp_path / "bert3", num_labels=3)
    recipe = write_recipe(
        tmp_path,
        f"""name: twice
seed: 7
model: {{path: {tmp_path / "bert3"}}}
data: {{train: {tiny_dir / "sent.csv"}, split: {{dev: 0.25}}, max_length: 24, max_train_samples: 120}}
stages:
  - finetune: {{max_steps: 6, batch_size: 8, eval_every: 3}}
  - distill: {{student: {{num_hidden_layers: 1, hidden_size: 16, num_attention_heads: 2, intermediate_size: 32}},
              losses: [{{type: logits}}, {{type: hidden, layer_map: {{0: 1}}}}], max_steps: 4, batch_size: 8, eval_every: 2}}
evaluate: {{artifacts: [torch]}}
bench: {{enabled: false}}
""",
    )
    dirs = []
    for name in ("a", "b"):
        torch.manual_seed(len(name) * 1234 + ord(name))  # whatever ran before in this process must not matter
        torch.rand(17)
        dirs.append(run(recipe, output_dir=str(tmp_path / name), quiet=True))
    wa, wb = (load_file(str(d / "model" / "model.safetensors")) for d in dirs)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa), [k for k in wa if not torch.equal(wa[k], wb[k])]
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in dirs)
    assert ma["artifacts"]["pytorch"]["metrics"] == mb["artifacts"]["pytorch"]["metrics"]
    for sa, sb in zip(ma["stages"], mb["stages"]):
        assert [h for h in sa["history"]] == [h for h in sb["history"]]  # every logged loss and dev metric
