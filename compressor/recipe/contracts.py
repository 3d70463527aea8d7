"""Stage contracts: the one rule that ``validate``, ``plan`` and ``run`` apply to a recipe's stage list.

Each stage config declares its :class:`~compressor.recipe.schema.base.Contract` — the facts it needs (an exported
graph, a model trained with fake quantization, a classifier or a causal LM), the facts it must not find (zeros it
would regrow, a trimmed vocabulary), what it leaves, and the settings it refuses. :func:`stage_order_problem`
walks the stages with those facts alone (no file is read); :func:`check_stages` adds what the stages ask of the
model's config.json — a family that supports them, head counts its layout can lose, layers a student can take
(compressor/recipe/model_config.py). ``load_recipe`` calls :func:`check_stages`, so every command that reads a recipe
refuses the same recipes, with the recipe's file:line, before any weights load.
"""

from __future__ import annotations

from pathlib import Path

from compressor.recipe.schema.base import FAKE_QUANT, SELECTION, Contract

Problem = tuple[tuple, str]  # (location in the recipe, message)

# facts that must be gone when the last stage has run: (message), pointed at where the fact was made
DANGLING = {FAKE_QUANT: "a model trained with `qat:` is exported by a later `quantize: {type: qat}` stage; add one"}


def contract_of(cfg) -> Contract:
    """A stage config's contract (an empty one for a config that declares none)."""
    contract = getattr(cfg, "contract", None)
    return contract() if callable(contract) else Contract()


def _text(message: str, facts: dict[str, tuple], fact: str, task: str) -> str:
    source = ".".join(str(p) for p in facts.get(fact, ())[:2])
    return message.replace("{source}", source).replace("{task}", task)


def _start(recipe) -> dict[str, tuple]:
    """The facts before the first stage: the task, and whether the data has a split to choose on."""
    facts: dict[str, tuple] = {recipe.model.task: ("model", "task")}
    d = recipe.data
    if d.split.select_on == "validation" or d.dev or d.test or d.split.dev > 0 or d.split.test > 0:
        facts[SELECTION] = ("data", "split")
    return facts


def stage_order_problem(recipe) -> Problem | None:
    """The first stage whose contract the stages before it do not meet, or a fact left dangling; None if all hold."""
    facts = _start(recipe)
    for i, (kind, cfg) in enumerate(recipe.stage_list()):
        here = ("stages", i, kind)
        contract = contract_of(cfg)
        for need in contract.needs:
            if (need.fact in facts) != need.present:
                return here + need.field, _text(need.message, facts, need.fact, recipe.model.task)
        if contract.problems:
            field, message = contract.problems[0]
            return here + field, message
        for fact in contract.removes:
            facts.pop(fact, None)
        for fact, field in contract.produces.items():
            facts[fact] = here + field
    for fact, message in DANGLING.items():
        if fact in facts:
            return facts[fact], message
    return None


def bench_problem(recipe) -> Problem | None:
    """Generation timing asks for a causal LM."""
    gen = recipe.bench.generation
    if gen is not None and recipe.bench.enabled and recipe.model.task != "causal-lm":
        return ("bench", "generation"), (
            f"times generation (prefill and decode), which needs a causal LM; model.task is "
            f"{recipe.model.task}: remove bench.generation"
        )
    return None


def recipe_problem(recipe, base_dir: Path | None = None) -> Problem | None:
    """The first problem: stage order, then (with ``base_dir``, the folder relative paths start from) what the
    recipe asks of the model's config.json (sequence lengths, families, head counts, students, block sizes)."""
    problem = stage_order_problem(recipe) or bench_problem(recipe)
    if problem is None and base_dir is not None:
        from compressor.recipe.model_config import model_problem

        problem = model_problem(recipe, base_dir)
    return problem


def check_stages(recipe, base_dir: Path | None = None) -> None:
    """Raise the RecipeError (file:line: field: message) of :func:`recipe_problem`, if any."""
    problem = recipe_problem(recipe, base_dir)
    if problem is not None:
        loc, message = problem
        raise recipe.error(".".join(str(p) for p in loc), message)
