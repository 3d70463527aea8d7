"""Stage contracts without a model: every stage config declares one, and the one walk over them refuses the stage
orders ``run`` cannot complete (the config.json side is tested in tests/integration/test_contracts_matrix.py)."""

from __future__ import annotations

import typing

import pytest

from compressor.core.errors import RecipeError
from compressor.recipe import parse_recipe_text
from compressor.recipe.contracts import contract_of, stage_order_problem
from compressor.recipe.schema import FAKE_QUANT, SPARSE, StageConfig, StageItem


def _stage_classes() -> set[type]:
    """Every config class a ``stages:`` item can hold (the members of each stage's union)."""
    out: set[type] = set()

    def walk(tp):
        for arg in typing.get_args(tp):
            if isinstance(arg, type) and issubclass(arg, StageConfig):
                out.add(arg)
            else:
                walk(arg)

    for item in typing.get_args(typing.get_args(StageItem)[0]):
        item_cls = typing.get_args(item)[0]
        for field in item_cls.model_fields.values():
            walk(field.annotation) if not isinstance(field.annotation, type) else out.add(field.annotation)
    return out


def test_every_stage_config_declares_its_contract():
    classes = _stage_classes()
    assert len(classes) >= 10  # finetune, distill, export, 3 prune types, 5 quantize schemes
    for cls in classes:
        assert issubclass(cls, StageConfig), cls
        assert cls.contract is not StageConfig.contract, f"{cls.__name__} declares no contract"


def _recipe(stages: str, task: str = "sequence-classification"):
    data = "{train: d.csv}" if "max_drop" not in stages else "{train: d.csv, split: {dev: 0, select_on: dev}}"
    text = f"model: {{path: m, task: {task}}}\ndata: {data}\nstages:\n{stages}\n"
    return parse_recipe_text(text, "recipe.yaml")[0]


@pytest.mark.parametrize(
    "stages, task, line, where, words",
    [
        (
            "  - finetune: {}\n  - quantize: {type: static}",
            "sequence-classification",
            5,
            "stages.1.quantize",
            "put an 'export' stage before it",
        ),
        (
            "  - export: {}\n  - finetune: {qat: {}}",
            "sequence-classification",
            5,
            "stages.1.finetune.qat",
            "a model trained with `qat:` is exported by a later `quantize: {type: qat}` stage",
        ),
        ("  - prune: {type: vocabulary}", "causal-lm", 4, "stages.0.prune", "not causal-lm"),
        ("  - export: {with_past: true}", "sequence-classification", 4, "stages.0.export.with_past", "causal-lm"),
        (
            "  - prune: {type: unstructured, sparsity: 0.5, criterion: {type: movement}}",
            "sequence-classification",
            4,
            "stages.0.prune.criterion.type",
            "movement pruning needs training",
        ),
        (
            "  - distill: {student: {every: 2}, transfer: {path: t.txt}, losses: [{type: hidden}]}",
            "causal-lm",
            4,
            "stages.0.distill.transfer",
            "a transfer set is for classifiers",
        ),
        (
            "  - export: {}\n  - quantize: {type: static, max_drop: 1.0}",
            "sequence-classification",
            5,
            "stages.1.quantize.max_drop",
            "the accuracy budget needs a dev or test split",
        ),
    ],
)
def test_stage_orders_run_would_refuse_are_refused_when_the_recipe_is_read(stages, task, line, where, words):
    with pytest.raises(RecipeError) as e:
        _recipe(stages, task)
    assert f"recipe.yaml:{line}: {where}: " in str(e.value) and words in str(e.value), str(e.value)


def test_facts_flow_through_the_stages():
    r = _recipe(
        "  - finetune: {qat: {}, prune: {type: unstructured, sparsity: 0.5}}\n  - export: {}\n"
        "  - quantize: {type: qat}\n  - quantize: {type: dynamic}"
    )
    assert stage_order_problem(r) is None
    finetune, export, qat, dynamic = (contract_of(c) for _, c in r.stage_list())
    assert set(finetune.produces) == {SPARSE, FAKE_QUANT} and finetune.trains and finetune.changes_model
    assert FAKE_QUANT in qat.removes and not export.changes_model and not dynamic.changes_model
    # a new student drops the zeros an earlier stage made; the current model does not
    ok = _recipe("  - prune: {type: unstructured, sparsity: 0.5}\n  - distill: {student: {every: 2}}")
    assert stage_order_problem(ok) is None
    with pytest.raises(RecipeError, match="stages.1.distill: this stage trains the model that stages.0 made sparse"):
        _recipe("  - prune: {type: unstructured, sparsity: 0.5}\n  - distill: {teacher: t, student: current}")
