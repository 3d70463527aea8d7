"""Recipe errors point at FILE:LINE: dotted.path, --set overrides, hostile YAML (issue 2)."""

from __future__ import annotations

import time

import pytest
import yaml

from compressor.core.errors import RecipeError
from compressor.recipe import load_recipe, parse_recipe_text
from compressor.recipe.loader import MAX_DEPTH

GOOD = """\
name: demo
seed: 7
model:
  path: models/tiny
  task: sequence-classification
data:
  train: train.csv
  text: sentence
  labels: [neg, pos]
  split: {dev: 0.2, test: 0.1}
stages:
  - finetune: {epochs: 1, lr: 1.0e-4, batch_size: 8}
  - export: {opset: 17}
  - quantize: {type: dynamic}
bench: {batch_sizes: [1, 8], seq_lengths: [32]}
"""
# line numbers in GOOD:   4 model.path, 9 data.labels, 12 stages.0, 13 stages.1, 14 stages.2, 15 bench


def _err(tmp_path, text: str, overrides=None) -> RecipeError:
    p = tmp_path / "recipe.yaml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(RecipeError) as info:
        load_recipe(p, overrides)
    e = info.value
    assert "\n" not in str(e)
    return e


def _edit(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


def test_good_recipe_validates(tmp_path):
    p = tmp_path / "recipe.yaml"
    p.write_text(GOOD)
    recipe, raw = load_recipe(p)
    assert recipe.name == "demo" and recipe.seed == 7
    assert [k for k, _ in recipe.stage_list()] == ["finetune", "export", "quantize"]
    assert recipe.data.split.dev == 0.2 and raw["data"]["labels"] == ["neg", "pos"]


# ------------------------------------------------------------------ FILE:LINE: path: message
@pytest.mark.parametrize(
    "old, new, line, field, words",
    [
        ("  path: models/tiny", "  pth: models/tiny", 4, "model.pth", "unknown key; did you mean 'path'?"),
        ("  text: sentence", "  txet: sentence", 8, "data.txet", "did you mean 'text'?"),
        ("batch_size: 8}", "batch_sise: 8}", 12, "stages.0.finetune.batch_sise", "did you mean 'batch_size'?"),
        ("bench: {batch_sizes", "bench: {batch_size", 15, "bench.batch_size", "did you mean 'batch_sizes'?"),
        ("seed: 7", "sed: 7", 2, "sed", "did you mean 'seed'?"),
        ("epochs: 1,", "epochs: many,", 12, "stages.0.finetune.epochs", "valid number"),
        ("seed: 7", "seed: [7]", 2, "seed", "valid integer"),
        ("labels: [neg, pos]", "labels: neg", 9, "data.labels", "valid list"),
        ("lr: 1.0e-4", "lr: 5", 12, "stages.0.finetune.lr", "less than 1"),
        ("opset: 17", "opset: 9", 13, "stages.1.export.opset", "greater than or equal to 11"),
        ("{dev: 0.2, test: 0.1}", "{dev: 0.6, test: 0.5}", 10, "data.split", "dev + test must be < 1"),
        ("labels: [neg, pos]", "labels: [neg, neg]", 9, "data.labels", "unique"),
        ("  - export: {opset: 17}", "  - exprot: {opset: 17}", 13, "stages.1", "unknown stage 'exprot'; did you mean 'export'?"),
        ("  - export: {opset: 17}", "  - prnue: {}", 13, "stages.1", "unknown stage 'prnue'; did you mean 'prune'?"),
        (
            "  - export: {opset: 17}",
            "  - prune: {}",
            13,
            "stages.1.prune.type",
            "required field is missing; one of: 'unstructured'",
        ),
        ("  - export: {opset: 17}", "  - export", 13, "stages.1", "each stage is a mapping with one key"),
        ("{type: dynamic}", "{type: fp4}", 14, "stages.2.quantize.type", "unknown type 'fp4'"),
        ("{type: dynamic}", "{per_channel: true}", 14, "stages.2.quantize.type", "required field is missing; one of: 'dynamic'"),
        ("seed: 7", "seed: 7\ndevice: tpu", 3, "device", "'auto', 'cpu' or 'cuda'"),
    ],
)
def test_error_names_file_line_and_field(tmp_path, old, new, line, field, words):
    e = _err(tmp_path, _edit(old, new))
    assert (e.line, e.field) == (line, field), str(e)
    assert str(e).startswith(f"{tmp_path / 'recipe.yaml'}:{line}: {field}: "), str(e)
    assert words in str(e)


def test_misspelt_key_wins_over_the_missing_field_it_causes(tmp_path):
    # "pth" also makes model.path missing; the useful error is the misspelling
    e = _err(tmp_path, _edit("  path: models/tiny", "  pth: models/tiny"))
    assert e.field == "model.pth" and "did you mean 'path'" in str(e)


def test_yaml_syntax_error_has_its_line(tmp_path):
    e = _err(tmp_path, _edit("{epochs: 1, lr: 1.0e-4, batch_size: 8}", "{epochs: 1, lr: 1.0e-4, batch_size: 8"))
    assert e.line in (12, 13) and "YAML syntax error" in str(e)
    e = _err(tmp_path, _edit("  train: train.csv", "\ttrain: train.csv"))
    assert e.line == 7 and "'\\t'" in str(e)
    e = _err(tmp_path, GOOD + "oops: [1, 2\n")
    assert e.line is not None and e.line >= 16


@pytest.mark.parametrize(
    "text, line, field, words",
    [
        ("name: x\nmodel: {path: m}\n", 1, "data", "required field is missing"),
        ("name: x\ndata: {train: t.csv}\n", 1, "model", "required field is missing"),
        ("model: {task: causal-lm}\ndata: {train: t.csv}\n", 1, "model.path", "required field is missing"),
    ],
)
def test_missing_required_section(tmp_path, text, line, field, words):
    e = _err(tmp_path, text)
    assert (e.line, e.field) == (line, field) and words in str(e)


def test_duplicate_key(tmp_path):
    e = _err(tmp_path, _edit("  text: sentence", "  text: sentence\n  text: other"))
    assert e.line == 9 and "duplicate key 'text'" in str(e)
    e = _err(tmp_path, GOOD + "seed: 8\n")
    assert e.line == 16 and "duplicate key 'seed'" in str(e)


@pytest.mark.parametrize("text", ["- model\n- data\n", "just a string\n", "42\n", "[1, 2]\n"])
def test_top_level_must_be_a_mapping(tmp_path, text):
    e = _err(tmp_path, text)
    assert e.line == 1 and "top level must be a mapping" in str(e)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "~\n"])
def test_empty_file(tmp_path, text):
    e = _err(tmp_path, text)
    assert e.line == 1
    assert "empty recipe" in str(e) or "top level must be a mapping" in str(e)


def test_unreadable_files(tmp_path):
    with pytest.raises(RecipeError, match="no such file"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(RecipeError, match="not a file"):
        load_recipe(tmp_path)
    p = tmp_path / "latin.yaml"
    p.write_bytes(GOOD.replace("demo", "d\xe9mo").encode("latin-1"))
    with pytest.raises(RecipeError, match="not UTF-8"):
        load_recipe(p)


@pytest.mark.parametrize("junk, line", [("\x00", 5), ("\x07", 5), ("\x1b[31m", 5)])
def test_control_characters_are_a_recipe_error_with_a_line(tmp_path, junk, line):
    e = _err(tmp_path, _edit("  task: sequence-classification", "  task: seq" + junk))
    assert e.line == line and "unacceptable character" in str(e)


def test_python_tags_are_rejected(tmp_path):
    e = _err(tmp_path, _edit("  path: models/tiny", "  path: !!python/object/apply:os.system [echo hi]"))
    assert e.line == 4 and ("python" in str(e))
    e = _err(tmp_path, _edit("model:\n", "model: !!python/object:os.system\n"))
    assert e.line == 3 and "unsupported YAML tag" in str(e)


# ------------------------------------------------------------------ numbers
@pytest.mark.parametrize(
    "old, new, field",
    [
        ("lr: 1.0e-4", "lr: .inf", "stages.0.finetune.lr"),
        ("lr: 1.0e-4", "lr: -.inf", "stages.0.finetune.lr"),
        ("lr: 1.0e-4", "lr: .nan", "stages.0.finetune.lr"),
        ("epochs: 1,", "epochs: 1.0e400,", "stages.0.finetune.epochs"),
        ("epochs: 1,", "epochs: .NaN,", "stages.0.finetune.epochs"),
        ("batch_size: 8", "batch_size: 1000000000000000000000000000000", "stages.0.finetune.batch_size"),
        ("seed: 7", "seed: 99999999999999999999999999999999999999", "seed"),
        ("seed: 7", "seed: -1", "seed"),
        ("{dev: 0.2,", "{dev: .nan,", "data.split.dev"),
        ("bench: {batch_sizes: [1, 8]", "bench: {batch_sizes: [1, 1.0e999]", "bench.batch_sizes.1"),
    ],
)
def test_huge_and_non_finite_numbers_are_rejected_with_the_field(tmp_path, old, new, field):
    e = _err(tmp_path, _edit(old, new))
    assert e.field == field, str(e)
    assert e.line is not None


# ------------------------------------------------------------------ run names
@pytest.mark.parametrize("bad", ["a/b", "../escape", "..", ".", "/abs", "x/../../y", "a\\\\b", "'with space'", "''", "-x" * 60])
@pytest.mark.parametrize("where", ["name", "output"])
def test_run_names_that_could_escape_the_run_dir_are_rejected(tmp_path, bad, where):
    text = _edit("name: demo", f"name: {bad}") if where == "name" else GOOD + f"output: {{name: {bad}}}\n"
    e = _err(tmp_path, text)
    assert e.field == ("name" if where == "name" else "output.name"), str(e)
    assert e.line == (1 if where == "name" else 16)


@pytest.mark.parametrize("ok", ["run-1", "sst2_minilm.v2", "A"])
def test_plain_run_names_are_fine(ok):
    recipe, _ = parse_recipe_text(GOOD.replace("name: demo", f"name: {ok}"))
    assert recipe.name == ok


# ------------------------------------------------------------------ hostile YAML
def _bomb(levels: int = 9) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    return GOOD + "\n".join(lines) + "\n"


def test_alias_bomb_is_rejected_quickly(tmp_path):
    t0 = time.perf_counter()
    e = _err(tmp_path, _bomb())  # 10**9 nodes once expanded
    assert time.perf_counter() - t0 < 3.0
    assert "alias bomb" in str(e) and e.line is not None


def test_alias_bomb_in_a_set_value_is_rejected():
    nested = "&a0 [x, x, x, x, x, x, x, x, x, x]"
    for i in range(1, 8):
        nested = f"[{nested}, " + ", ".join([f"*a{i - 1}"] * 9) + "]"
        nested = nested.replace("[", f"&a{i} [", 1)
    t0 = time.perf_counter()
    with pytest.raises(RecipeError, match="--set") as info:
        parse_recipe_text(GOOD, overrides=[f"evaluate.splits={nested}"])
    assert time.perf_counter() - t0 < 3.0
    assert "alias bomb" in str(info.value)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 5, 3000])
def test_deep_nesting_is_rejected(tmp_path, depth):
    t0 = time.perf_counter()
    e = _err(tmp_path, GOOD + "evaluate: " + "[" * depth + "]" * depth + "\n")
    assert time.perf_counter() - t0 < 60.0  # a hang guard (deep nesting must not blow up), not a speed target
    assert "nested deeper" in str(e) and e.line == 16


def test_recursive_alias_is_rejected(tmp_path):
    e = _err(tmp_path, GOOD.replace("bench: {", "bench: &b {loop: *b, "))
    assert "nested deeper" in str(e) or "alias" in str(e)


def test_merge_keys_work(tmp_path):
    text = GOOD.replace(
        "  - finetune: {epochs: 1, lr: 1.0e-4, batch_size: 8}",
        "  - finetune: &train {epochs: 1, lr: 1.0e-4, batch_size: 8}\n"
        "  - distill:\n"
        "      <<: *train\n"
        "      lr: 2.0e-4\n"
        "      student: {layers: [0]}",
    )
    p = tmp_path / "recipe.yaml"
    p.write_text(text)
    recipe, _ = load_recipe(p)
    kinds = recipe.stage_list()
    assert [k for k, _ in kinds] == ["finetune", "distill", "export", "quantize"]
    distill = kinds[1][1]
    assert distill.batch_size == 8 and distill.epochs == 1 and distill.lr == 2.0e-4
    # a misspelt key next to a merge still points at its own line
    e = _err(tmp_path, text.replace("      lr: 2.0e-4", "      lrr: 2.0e-4"))
    assert (e.line, e.field) == (15, "stages.1.distill.lrr")


def test_merge_precedence_follows_yaml():
    text = GOOD.replace(
        "  - export: {opset: 17}",
        "  - export: &e1 {opset: 13, tolerance: 0.5}\n"
        "  - export: &e2 {opset: 14, optimize: false}\n"
        "  - export: {<<: [*e1, *e2], tolerance: 0.25}",
    )
    recipe, raw = parse_recipe_text(text)
    merged = recipe.stage_list()[3][1]
    assert (merged.opset, merged.optimize, merged.tolerance) == (13, False, 0.25)  # earlier merge wins; own key wins
    assert "<<" not in raw["stages"][3]["export"]


def test_merge_bomb_is_rejected_quickly(tmp_path):
    # each level merges ten copies of the one before: PyYAML's own flattening grows 10x per level
    lines = ["x0: &a0 {k0: 1, k1: 1, k2: 1, k3: 1, k4: 1, k5: 1, k6: 1, k7: 1, k8: 1, k9: 1}"]
    lines += [f"x{i}: &a{i} {{<<: [" + ", ".join([f"*a{i - 1}"] * 10) + "]}" for i in range(1, 12)]
    t0 = time.perf_counter()
    e = _err(tmp_path, "\n".join(lines) + "\n<<: *a11\n" + GOOD)
    assert time.perf_counter() - t0 < 3.0 and e.line is not None
    e = _err(tmp_path, GOOD.replace("bench: {", "bench: &b {<<: *b, "))
    assert e.line == 15


@pytest.mark.parametrize("merge", ["<<: 3", "<<: [1, 2]", "<<: *nope"])
def test_bad_merge_values(tmp_path, merge):
    e = _err(tmp_path, GOOD.replace("  train: train.csv", f"  train: train.csv\n  {merge}"))
    assert e.line == 8


# ------------------------------------------------------------------ --set
def test_set_nested_and_list_index():
    recipe, raw = parse_recipe_text(
        GOOD,
        overrides=[
            "stages.0.finetune.epochs=3",
            "data.split.dev=0.3",
            "bench.batch_sizes.1=16",
            "stages.-1.quantize.per_channel=false",
            "model.num_labels=2",
            "name=other",
        ],
    )
    assert recipe.stage_list()[0][1].epochs == 3 and recipe.data.split.dev == 0.3
    assert recipe.bench.batch_sizes == [1, 16] and recipe.stage_list()[2][1].per_channel is False
    assert recipe.model.num_labels == 2 and recipe.name == "other"
    assert raw["stages"][0]["finetune"]["epochs"] == 3  # raw data is what gets written as recipe.yaml


def test_set_whole_lists_and_new_sections():
    recipe, _ = parse_recipe_text(
        GOOD, overrides=["stages=[{finetune: {epochs: 2}}]", "evaluate.splits=[dev]", "output.name=elsewhere"]
    )
    assert [k for k, _ in recipe.stage_list()] == ["finetune"] and recipe.evaluate.splits == ["dev"]
    assert recipe.output.name == "elsewhere"


@pytest.mark.parametrize(
    "assignment, words",
    [
        ("model.pth=x", "model.pth: unknown key; did you mean 'path'?"),
        ("stages.0.finetune.lr=5", "stages.0.finetune.lr: input should be less than 1"),
        ("seed=-1", "seed: input should be greater than or equal to 0"),
        ("name=../up", "name: run name may"),
        ("stages.0.finetune.epochs=.nan", "finite number"),
    ],
)
def test_bad_set_value_names_the_set(assignment, words):
    with pytest.raises(RecipeError) as info:
        parse_recipe_text(GOOD, "r.yaml", overrides=[assignment])
    msg = str(info.value)
    assert msg.startswith(f"r.yaml (--set '{assignment}'): "), msg
    assert words in msg and info.value.line is None


@pytest.mark.parametrize(
    "assignment, words",
    [
        ("model.path", "expected KEY=VALUE"),
        ("=1", "empty key"),
        ("stages..lr=1", "empty key"),
        ("stages.7.finetune.lr=0.1", "stages has no item 7"),
        ("stages.x.finetune.lr=0.1", "stages has no item x"),
        ("model.path.deeper=1", "model.path is not a mapping or list"),
        ("prune.0.x=1", "prune is not set, so it has no item 0"),
    ],
)
def test_bad_set_key(assignment, words):
    with pytest.raises(RecipeError) as info:
        parse_recipe_text(GOOD, overrides=[assignment])
    assert str(info.value).startswith(f"--set '{assignment}': ") and words in str(info.value)


def test_set_value_that_is_no_yaml_is_a_string():
    recipe, _ = parse_recipe_text(GOOD, overrides=["model.path=[unclosed"])
    assert recipe.model.path == "[unclosed"


def test_error_in_the_file_still_points_at_the_file_when_sets_are_given(tmp_path):
    e = _err(tmp_path, _edit("lr: 1.0e-4", "lr: 7"), overrides=["seed=3"])
    assert (e.line, e.field) == (12, "stages.0.finetune.lr")


# ------------------------------------------------------------------ round trip and later errors
def test_valid_recipe_round_trips(tmp_path):
    recipe, raw = parse_recipe_text(GOOD, overrides=["stages.0.finetune.epochs=2"])
    again, _ = parse_recipe_text(yaml.safe_dump(raw, sort_keys=False))  # what a run writes as recipe.yaml
    assert again.model_dump() == recipe.model_dump()
    full, _ = parse_recipe_text(yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False))
    assert full.model_dump() == recipe.model_dump()


def test_recipe_error_helper_points_at_the_line(tmp_path):
    recipe, _ = parse_recipe_text(GOOD, "r.yaml")
    e = recipe.error("stages.1.export.opset", "opset 17 cannot export this model")
    assert str(e) == "r.yaml:13: stages.1.export.opset: opset 17 cannot export this model"
    e = recipe.error("stages.0.finetune.max_steps", "too many")  # not in the file: the nearest parent's line
    assert e.line == 12


def test_non_string_keys_are_rejected_with_a_line(tmp_path):
    e = _err(tmp_path, GOOD + "1: one\n")
    assert e.line == 16
    e = _err(tmp_path, GOOD + "? [a, b]\n: c\n")
    assert e.line == 16 and "plain scalars" in str(e)
    e = _err(tmp_path, _edit("  train: train.csv", '  train: train.csv\n  "weird\\nkey": 1'))
    assert e.line == 8 and "\\n" in str(e) and "\n" not in str(e)


def test_every_unknown_key_is_listed_with_its_line(tmp_path):
    text = _edit("  text: sentence", "  txt: sentence")
    text = text.replace("{epochs: 1, lr: 1.0e-4, batch_size: 8}", "{epochs: 1, lrr: 1.0e-4, batch_size: 8, shade: red}")
    text = text.replace("bench: {batch_sizes", "bench: {bach_sizes")
    e = _err(tmp_path, text)
    assert (e.line, e.field) == (8, "data.txt") and "did you mean 'text'" in str(e)
    assert (
        "also unknown: stages.0.finetune.lrr (line 12; did you mean 'lr'?), stages.0.finetune.shade (line 12), "
        "bench.bach_sizes (line 15; did you mean 'batch_sizes'?)" in str(e)
    ), str(e)
    assert "more error" not in str(e)
    e = _err(tmp_path, text.replace("epochs: 1,", "epochs: -1,"))  # other kinds of error are counted after them
    assert str(e).endswith("(and 1 more error)"), str(e)


def test_missing_data_files_are_refused_at_load_with_their_line(tmp_path):
    """validate / plan / run check every data path before anything runs; model folders may come later (warned)."""
    from compressor.recipe.paths import check_paths

    p = tmp_path / "recipe.yaml"
    p.write_text(_edit("path: models/tiny", "path: ./models/tiny"))  # not an org/name Hub id: a folder to check
    recipe, _ = load_recipe(p)
    with pytest.raises(RecipeError) as info:
        check_paths(recipe, tmp_path, models_must_exist=False)
    assert str(info.value) == f"{p}:7: data.train: train.csv: no such file or directory (looked in {tmp_path})"
    (tmp_path / "train.csv").write_text("sentence,label\na,neg\n")
    notes = check_paths(recipe, tmp_path, models_must_exist=False)  # data present, the model folder not yet
    assert len(notes) == 1 and notes[0].startswith(f"{p}:4: model.path: ./models/tiny: no such file or directory")
    with pytest.raises(RecipeError, match=r"recipe.yaml:4: model.path: ./models/tiny: no such file"):
        check_paths(recipe, tmp_path, models_must_exist=True)  # what `run` does
    recipe, _ = load_recipe(p, ["data.test=pkg://compressor/no-such.csv"])
    (tmp_path / "models" / "tiny").mkdir(parents=True)
    with pytest.raises(RecipeError, match=r"data.test: pkg://compressor/no-such.csv: no 'no-such.csv' inside package"):
        check_paths(recipe, tmp_path, models_must_exist=True)
