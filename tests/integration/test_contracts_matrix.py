"""Stage contracts over a matrix of tiny families × stage chains: ``compressor validate`` either refuses the recipe
(exit 2, one line with the recipe's file:line) or ``compressor run`` completes it.

Every cell is validated against a model folder that holds config.json ONLY (no weights, no tokenizer): validate
reads nothing else. The expected verdict of each cell is written here independently of the contracts (``expected``).
Accepted cells of the cheap chains are then run end to end on the real tiny model (stages, evaluation, report:
status "complete"); the accepted cells of the other chains are run by tests/integration/test_families_matrix.py
(structured prune → layer student → export → static INT8, unstructured → export → dynamic INT8 for every family)
and tests/integration/test_decoder_run.py (with_past export).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from compressor import testing as T
from compressor.cli.commands import app
from tests.conftest import write_recipe

FAMILIES = sorted(T.TINY)
CAUSAL = {mt for mt, (_, causal, _) in T.TINY.items() if causal}
KV_PAIRS = {mt for mt, (_, _, kw) in T.TINY.items() if kw.get("num_key_value_heads") == 2}  # 4 query heads, 2 kv heads
# variants made by editing config.json only: they exist to be refused
VARIANTS = {"albert-2-groups": ("albert", {"num_hidden_groups": 2}), "bloom": ("bert", {"model_type": "bloom"})}

CHAINS = {  # name: (stages, run the accepted cells here?)
    "static-without-export": ("  - finetune: {max_steps: 1}\n  - quantize: {type: static}", False),
    "heads-1": ("  - prune: {type: structured, heads: 1, round_to: 1, criterion: {type: magnitude}}", True),
    "vocabulary": ("  - prune: {type: vocabulary}", True),
    "layer-student": ("  - distill: {student: {layers: [1]}, max_steps: 1, batch_size: 8}", False),
    "with-past": ("  - export: {with_past: true}", False),
    "qat-never-exported": ("  - finetune: {max_steps: 1, qat: {}}\n  - export: {}", False),
    "int4-block-64": ("  - export: {}\n  - quantize: {type: int4, block_size: 64}", False),
    "transfer": (
        "  - distill: {student: {every: 2}, max_steps: 1, transfer: {path: TEXT}, losses: [{type: logits, alpha: 0.5}]}",
        False,
    ),
}


def expected(mt: str, chain: str) -> tuple[str, str] | None:
    """(field, part of the message) of the refusal the cell must get, or None: validate accepts it."""
    base = VARIANTS.get(mt, (mt, {}))[0]
    causal = base in CAUSAL
    if chain == "static-without-export":
        return "stages.1.quantize", "put an 'export' stage before it"
    if chain == "qat-never-exported":
        return "stages.0.finetune.qat", "add one"
    if chain == "int4-block-64":  # every tiny model is 32 wide
        return "stages.1.quantize.block_size", "block_size 64 does not divide"
    if chain == "with-past" and not causal:
        return "stages.0.export.with_past", "needs model.task: causal-lm"
    if chain in ("vocabulary",) and causal:
        return "stages.0.prune", "vocabulary pruning is for task sequence-classification, not causal-lm"
    if chain == "transfer" and causal:
        return "stages.0.distill.transfer", "a transfer set is for classifiers"
    if chain == "heads-1" and mt == "bloom":
        return "stages.0.prune", "structured pruning supports"
    if chain == "heads-1" and base in KV_PAIRS:
        return "stages.0.prune.heads", "remove a multiple of 2"
    if chain in ("layer-student", "transfer") and mt == "albert-2-groups":  # both make a layer-subset student
        return "stages.0.distill.student", "groups of shared layers"
    return None


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("contracts")
    T.write_sentiment_csv(root / "sent.csv", n=48)
    T.write_lm_text(root / "lm.txt", n_lines=60)
    (root / "extra.txt").write_text("a lovely film\nthe plot was dull\n")
    models, configs = {}, {}
    for mt in FAMILIES:
        models[mt] = T.tiny_model(mt, root / "models" / mt)
        configs[mt] = root / "configs" / mt  # config.json alone: what validate may read
        configs[mt].mkdir(parents=True)
        shutil.copy(models[mt] / "config.json", configs[mt] / "config.json")
    for name, (base, edit) in VARIANTS.items():
        configs[name] = root / "configs" / name
        configs[name].mkdir(parents=True)
        cfg = json.loads((models[base] / "config.json").read_text())
        (configs[name] / "config.json").write_text(json.dumps({**cfg, **edit}))
    return {"root": root, "models": models, "configs": configs}


def _recipe(matrix, mt: str, chain: str, model_dir: Path, folder: Path) -> Path:
    causal = VARIANTS.get(mt, (mt, {}))[0] in CAUSAL
    root = matrix["root"]
    data = (
        f"{{train: {root / 'lm.txt'}, split: {{dev: 0.25}}, max_length: 16}}"
        if causal
        else f"{{train: {root / 'sent.csv'}, split: {{dev: 0.25}}, max_length: 16}}"
    )
    folder.mkdir(parents=True, exist_ok=True)
    stages = CHAINS[chain][0].replace("TEXT", str(root / "extra.txt"))
    return write_recipe(
        folder,
        f"""name: {mt}-{chain}
model: {{path: {model_dir}, task: {"causal-lm" if causal else "sequence-classification"}}}
data: {data}
stages:
{stages}
evaluate: {{splits: [dev], artifacts: [torch]}}
bench: {{enabled: false}}
output: {{dir: {folder / "runs"}}}
""",
    )


CELLS = [(mt, chain) for mt in FAMILIES + sorted(VARIANTS) for chain in CHAINS]


def test_the_matrix_has_refusals_and_runs_of_every_kind():
    refused = {chain for mt, chain in CELLS if expected(mt, chain)}
    accepted_runs = {(mt, chain) for mt, chain in CELLS if not expected(mt, chain) and CHAINS[chain][1]}
    assert refused == set(CHAINS) and len(accepted_runs) >= len(FAMILIES)


@pytest.mark.parametrize("chain", list(CHAINS))
def test_validate_refuses_or_run_completes(matrix, chain, tmp_path):
    runner = CliRunner()
    for mt in FAMILIES + sorted(VARIANTS):
        cell = tmp_path / mt
        want = expected(mt, chain)
        r = runner.invoke(app, ["validate", str(_recipe(matrix, mt, chain, matrix["configs"][mt], cell))])
        out = [ln for ln in r.output.splitlines() if ln.strip()]
        if want is not None:
            field, text = want
            assert r.exit_code == 2 and len(out) == 1, (mt, chain, r.output)
            assert "recipe.yaml:" in out[0] and f": {field}: " in out[0] and text in out[0], (mt, chain, out[0])
            continue
        assert r.exit_code == 0 and "OK" in r.output, (mt, chain, r.output)
        if not CHAINS[chain][1] or mt in VARIANTS:
            continue  # run elsewhere (see the module docstring)
        from compressor.core.rundir import read_status
        from compressor.pipeline.orchestrate import run

        run_dir = run(_recipe(matrix, mt, chain, matrix["models"][mt], cell), quiet=True)
        assert read_status(run_dir) == "complete", (mt, chain)
        stages = json.loads((run_dir / "metrics.json").read_text())["stages"]
        assert [s["stage"] for s in stages] == ["prune"], (mt, chain, stages)
