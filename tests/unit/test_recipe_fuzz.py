"""Fuzzing the recipe loader (issue 7): malformed input is a RecipeError with a line, never a crash.

Thousands of generated recipes go through ``parse_recipe_text``: structural mutations of a valid
recipe (deleted / renamed / added keys, wrong types, random scalars, nested junk), text mutations
(inserted or deleted characters, unbalanced brackets, anchors and aliases), random YAML-ish text,
random bytes decoded, and random ``--set`` overrides. Each one must either validate or raise a
RecipeError that points at a line >= 1 (or, for an error that only a --set causes, names the
--set). Any other exception is a bug.

Example count: 700 + 500 + 400 + 300 + 300 + 300 = 2500 examples per run (about 17 s on 2 shared cores).
"""

from __future__ import annotations

import copy

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from compressor.core.errors import RecipeError
from compressor.recipe import parse_recipe_text

VALID = {
    "name": "fuzz",
    "seed": 1,
    "device": "cpu",
    "model": {"path": "models/tiny", "task": "sequence-classification", "num_labels": 2},
    "data": {
        "train": "train.csv",
        "dev": "dev.csv",
        "text": ["a", "b"],
        "label": "label",
        "labels": ["neg", "pos"],
        "split": {"dev": 0.1, "test": 0.1, "stratify": True, "dedupe": True},
        "max_length": 64,
    },
    "stages": [
        {"finetune": {"epochs": 1, "lr": 1.0e-4, "batch_size": 8, "warmup_ratio": 0.1}},
        {
            "distill": {
                "student": {"layers": [0, 2]},
                "losses": [{"type": "logits", "alpha": 0.5}, {"type": "hidden", "layer_map": {0: 1, 1: 3}}],
            }
        },
        {"export": {"opset": 17, "tolerance": 1.0e-3}},
        {"quantize": {"type": "dynamic", "per_channel": False}},
    ],
    "evaluate": {"splits": ["dev", "test"]},
    "bench": {"batch_sizes": [1, 8], "seq_lengths": [32], "iterations": 3, "devices": ["cpu"]},
    "output": {"dir": "runs", "name": "fuzz-run"},
}
VALID_TEXT = yaml.safe_dump(VALID, sort_keys=False)
FLOW_TEXT = yaml.safe_dump(VALID, sort_keys=False, default_flow_style=True, width=60)

FUZZ = settings(deadline=None, suppress_health_check=list(HealthCheck), print_blob=True)


def check(text: str, overrides: list[str] | None = None) -> None:
    try:
        parse_recipe_text(text, "fuzz.yaml", overrides)
    except RecipeError as e:
        if e.line is None:
            assert overrides, f"no line for: {e}"
            assert "--set" in str(e), f"no line and no --set named: {e}"
        else:
            assert isinstance(e.line, int) and e.line >= 1, e.line
            assert str(e).startswith(f"fuzz.yaml:{e.line}: "), str(e)
        assert "\n" not in str(e), f"error is not one line: {e!r}"


def test_the_unmutated_recipe_is_valid():
    recipe, _ = parse_recipe_text(VALID_TEXT, "fuzz.yaml")
    assert [k for k, _ in recipe.stage_list()] == ["finetune", "distill", "export", "quantize"]
    parse_recipe_text(FLOW_TEXT, "fuzz.yaml")


# ------------------------------------------------------------------ structural mutations
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["", "dynamic", "finetune", "1e-3", "5.0e-5", ".inf", "-.nan", "~", "../..", "a/b", "..", "yes", "0x1F"]),
)
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), inner, max_size=3),
    max_leaves=8,
)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


ALL_PATHS = [p for p in _paths(VALID) if p]


@st.composite
def mutated_recipe(draw):
    data = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(ALL_PATHS))
        parent = data
        try:
            for seg in path[:-1]:
                parent = parent[seg]
            key = path[-1]
            parent[key]  # noqa: B018 - the path may be gone after an earlier mutation
        except (KeyError, IndexError, TypeError):
            continue
        if not isinstance(parent, (dict, list)):  # an earlier mutation left a string here: str[0] reads but cannot change
            continue
        op = draw(st.sampled_from(["delete", "rename", "replace", "add", "wrap"]))
        if op == "delete":
            del parent[key]
        elif op == "rename" and isinstance(parent, dict):
            new = draw(
                st.one_of(
                    st.text(min_size=1, max_size=10), st.sampled_from([str(key) + "s", str(key)[:-1] or "x", str(key).upper()])
                )
            )
            if new not in parent:
                parent[new] = parent.pop(key)
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(junk)
        elif op == "wrap":
            parent[key] = draw(st.sampled_from([[parent[key]], {"x": parent[key]}, {str(key): parent[key]}]))
        else:
            parent[key] = draw(junk)
    return data


@settings(FUZZ, max_examples=700)
@given(mutated_recipe(), st.booleans())
def test_structural_mutations(data, flow):
    check(yaml.safe_dump(data, sort_keys=False, default_flow_style=flow, allow_unicode=True))


# ------------------------------------------------------------------ text mutations
INSERTS = st.one_of(
    st.text(max_size=6),
    st.sampled_from(
        [
            "[",
            "]",
            "{",
            "}",
            ":",
            ": ",
            "- ",
            "\t",
            "\n",
            "  ",
            "#",
            "'",
            '"',
            "&a ",
            "*a",
            "&a [1, 2] ",
            "<<: *a\n",
            "!!python/object:os.system ",
            "!!binary ",
            "!foo ",
            "%YAML 1.1\n",
            "---\n",
            "...\n",
            "? ",
            "|",
            ">",
            "\\",
            "\x00",
            "\x85",
            "\ufeff",
            "\u2028",
            "\r",
            ".nan",
            "1e999",
            "9" * 40,
        ]
    ),
)


@st.composite
def text_mutation(draw):
    text = draw(st.sampled_from([VALID_TEXT, FLOW_TEXT]))
    for _ in range(draw(st.integers(1, 5))):
        i = draw(st.integers(0, len(text)))
        if draw(st.booleans()):
            text = text[:i] + draw(INSERTS) + text[i:]
        else:
            text = text[:i] + text[i + draw(st.integers(1, 20)) :]
    return text


@settings(FUZZ, max_examples=500)
@given(text_mutation())
def test_text_mutations(text):
    check(text)


@st.composite
def alias_games(draw):
    """Anchors, aliases and merge keys dropped into a valid recipe, sometimes recursive or undefined."""
    lines = VALID_TEXT.splitlines()
    anchors = ["a", "b"]
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        line = lines[i]
        if ":" in line and draw(st.booleans()):
            k, _, v = line.partition(":")
            lines[i] = f"{k}: &{draw(st.sampled_from(anchors))}{v}"
        else:
            indent = len(line) - len(line.lstrip(" -"))
            lines.insert(
                i + 1,
                " " * indent
                + draw(
                    st.sampled_from(
                        [f"<<: *{anchors[0]}", f"x: *{anchors[1]}", "y: *undefined", "- *a", "<<: [*a, *b]", "z: &a [*a]"]
                    )
                ),
            )
    return "\n".join(lines) + "\n"


@settings(FUZZ, max_examples=400)
@given(alias_games())
def test_anchors_and_aliases(text):
    check(text)


# ------------------------------------------------------------------ random text and bytes
yamlish = st.lists(
    st.sampled_from(
        [
            "model",
            "data",
            "stages",
            "path",
            "train",
            "- ",
            ": ",
            "{",
            "}",
            "[",
            "]",
            ",",
            "\n",
            "  ",
            "&x ",
            "*x",
            "<<",
            "finetune",
            "quantize",
            "type",
            "1",
            "-1",
            "0.5",
            "'",
            '"',
            "?",
            "!!str ",
            "#",
            "|",
            "null",
            "true",
        ]
    ),
    max_size=40,
).map("".join)


@settings(FUZZ, max_examples=300)
@given(st.one_of(st.text(max_size=200), yamlish))
def test_random_text(text):
    check(text)


@settings(FUZZ, max_examples=300)
@given(st.binary(max_size=200), st.sampled_from(["utf-8", "latin-1", "utf-16"]))
def test_random_bytes_decoded(raw, encoding):
    check(raw.decode(encoding, errors="replace"))


# ------------------------------------------------------------------ --set overrides
keys = st.one_of(
    st.sampled_from([".".join(map(str, p)) for p in ALL_PATHS]),
    st.text(min_size=0, max_size=15),
    st.sampled_from(["stages.9.finetune.lr", "stages.-1", "a..b", "model.path.x", ""]),
)
values = st.one_of(
    st.text(max_size=15), st.sampled_from(["[", "{a: 1", "&a [*a]", "*x", "1e999", ".nan", "[1, 2]", "{}", "null", "\x00"])
)


@settings(FUZZ, max_examples=300)
@given(st.lists(st.tuples(keys, values, st.booleans()), min_size=1, max_size=3))
def test_random_overrides(sets):
    check(VALID_TEXT, [f"{k}={v}" if eq else f"{k}{v}" for k, v, eq in sets])
