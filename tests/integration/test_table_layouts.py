"""Table layouts as users have them (issue 18): a ``text;label`` file with a header, a headerless TSV with label
names (as AG News ships), and a Hugging Face ``datasets`` folder, each scored to the same metrics as the same rows
in the canonical layout (``text,label`` csv) — by ``compressor eval`` and by a recipe run; and bad layout settings
refused in one line that names the recipe field (validate) or the eval option."""

from __future__ import annotations

import csv
import json
import random

import pytest
from typer.testing import CliRunner

from compressor.cli.commands import app
from tests.conftest import write_recipe

NAMES = ["World", "Sports", "Business", "Sci/Tech"]
WORDS = [
    "markets",
    "team",
    "election",
    "chip",
    "season",
    "shares",
    "leaders",
    "software",
    "goal",
    "talks",
    "profit",
    "coach",
    "research",
    "peace",
    "league",
    "stocks",
    "network",
    "treaty",
    "players",
    "launch",
]


def _cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200", "NO_COLOR": "1"})


def _rows(n: int, seed: int) -> list[tuple[str, int]]:
    """Sentences with commas (never a semicolon or tab), labels spread over the four classes."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        words = [rng.choice(WORDS) for _ in range(rng.randint(4, 12))]
        words.insert(rng.randrange(1, len(words)), ",")
        out.append((" ".join(words).replace(" ,", ",") + f" item{i}", i % 4))
    return out


def _write(path, rows, sep=",", header=("text", "label"), names=True):
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, delimiter=sep, lineterminator="\n")
        if header:
            w.writerow(header)
        w.writerows([(t, NAMES[y] if names else y) for t, y in rows])
    return path


def _save_dataset(folder, rows, class_label: bool):
    import datasets

    label = datasets.ClassLabel(names=NAMES) if class_label else datasets.Value("string")
    features = datasets.Features({"text": datasets.Value("string"), "label": label})
    ds = datasets.Dataset.from_dict(
        {"text": [t for t, _ in rows], "label": [y if class_label else NAMES[y] for _, y in rows]}, features=features
    )
    ds.save_to_disk(str(folder))
    return folder


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """A 4-class tiny classifier with large random weights (its predictions vary from row to row) and the same rows
    written in every layout: train (120 rows) and test (80 rows)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from compressor import testing as T

    d = tmp_path_factory.mktemp("layouts")
    model_dir = T.tiny_bert(d / "model", num_labels=4)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir)
    torch.manual_seed(3)
    for p in model.parameters():
        if p.dim() == 2:
            torch.nn.init.normal_(p, std=1.0)
    model.config.id2label = dict(enumerate(NAMES))
    model.config.label2id = {n: i for i, n in enumerate(NAMES)}
    model.save_pretrained(model_dir)
    files = {}
    for split, rows in (("train", _rows(120, 0)), ("test", _rows(80, 1))):
        files[("canonical", split)] = _write(d / f"{split}.csv", rows)
        files[("semicolon", split)] = _write(d / f"{split}.txt", rows, sep=";")
        files[("headerless", split)] = _write(d / f"{split}.tsv", rows, sep="\t", header=None)
        files[("datasets", split)] = _save_dataset(d / f"{split}_ds", rows, class_label=False)
        files[("ids", split)] = _write(d / f"{split}_ids.csv", rows, names=False)
        files[("classlabel", split)] = _save_dataset(d / f"{split}_cl", rows, class_label=True)
    return {"dir": d, "model": model_dir, "files": files}


def _eval(layouts, kind, *options):
    out = layouts["dir"] / f"eval-{kind}-{len(options)}.json"
    r = _cli("eval", layouts["model"], "--data", layouts["files"][(kind, "test")], "--json", out, *options)
    assert r.exit_code == 0, r.output
    return json.loads(out.read_text()), r.output


def test_semicolon_file_with_a_header_scores_as_the_canonical_csv(layouts):
    canonical, _ = _eval(layouts, "canonical")
    m = canonical["metrics"]
    assert m["n"] == 80 and canonical["data_rows"]["counts"]["read"] == 80
    assert sum(1 for col in zip(*m["confusion"]) if sum(col)) >= 2  # predictions vary: equal metrics mean something
    sniffed, out = _eval(layouts, "semicolon")
    assert sniffed["metrics"] == m and "80 rows read" in out
    explicit, _ = _eval(layouts, "semicolon", "--sep", ";")
    assert explicit["metrics"] == m


def test_headerless_tsv_with_label_names_scores_as_the_canonical_csv(layouts):
    m = _eval(layouts, "canonical")[0]["metrics"]
    by_position, out = _eval(layouts, "headerless", "--no-header", "--text", "0", "--label", "1")
    assert by_position["metrics"] == m and "80 rows read, no duplicates dropped, 80 used" in out
    by_name, _ = _eval(
        layouts, "headerless", "--no-header", "--columns", "sentence,topic", "--text", "sentence", "--label", "topic"
    )
    assert by_name["metrics"] == m
    r = _cli("eval", layouts["model"], "--data", layouts["files"][("headerless", "test")])
    assert r.exit_code == 2 and "missing column" in r.output and "its first row reads like data" in r.output, r.output
    assert "--no-header" in r.output and "--text: 0" in r.output, r.output


def test_saved_datasets_score_as_the_canonical_layout(layouts):
    m = _eval(layouts, "canonical")[0]["metrics"]
    assert _eval(layouts, "datasets")[0]["metrics"] == m
    # ClassLabel ids: the same rows as a csv of class ids
    ids = _eval(layouts, "ids")[0]["metrics"]
    assert _eval(layouts, "classlabel")[0]["metrics"] == ids


def _recipe(layouts, kind, data_extra=""):
    f = layouts["files"]
    text = (
        f"name: {kind}\nmodel: {{path: {layouts['model']}}}\ndata:\n  train: {f[(kind, 'train')]}\n"
        f"  test: {f[(kind, 'test')]}\n  split: {{dev: 0.0, validation: 0.0, select_on: dev}}\n  max_length: 32\n"
        f"{data_extra}stages: []\nevaluate: {{splits: [test], artifacts: [torch]}}\nbench: {{enabled: false}}\n"
    )
    return write_recipe(layouts["dir"], text, f"{kind}.yaml")


def test_recipe_runs_score_every_layout_as_the_canonical_one(layouts):
    from compressor.pipeline.orchestrate import run

    def accuracy(kind, extra=""):
        run_dir = run(_recipe(layouts, kind, extra), output_dir=str(layouts["dir"] / "runs"), quiet=True)
        m = json.loads((run_dir / "metrics.json").read_text())["artifacts"]["pytorch"]["metrics"]["test"]
        log = (run_dir / "log.txt").read_text()
        assert "data.test: 80 rows read, no duplicates dropped, 80 used" in log, log
        return m["accuracy"], m["n"]

    canonical = accuracy("canonical")
    assert canonical[1] == 80
    assert accuracy("semicolon") == canonical
    assert accuracy("headerless", "  header: false\n  text: 0\n  label: 1\n") == canonical
    assert accuracy("datasets") == canonical


# ------------------------------------------------------------------ bad layout settings: one line, exit 2
def _validate(layouts, kind, extra, tmp_path):
    recipe = _recipe(layouts, kind, extra)
    (tmp_path / "r.yaml").write_text(recipe.read_text())
    return _cli("validate", tmp_path / "r.yaml")


def _one_line(r, *needles):
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert r.exit_code == 2, r.output
    assert len(lines) == 1 and all(n in lines[0] for n in needles), r.output


@pytest.mark.parametrize(
    "kind,extra,needles",
    [
        ("semicolon", "  sep: ';;'\n", ["r.yaml:8: data.sep: must be one character, not 2"]),
        (
            "headerless",
            "  header: false\n  text: 0\n  label: 5\n",
            ["r.yaml:10: data.label: column 5 is out of range", "has 2 columns (positions 0..1)"],
        ),
        (
            "headerless",
            "  header: false\n  columns: [a, b, c]\n  text: a\n  label: b\n",
            ["r.yaml:9: data.columns: names 3 columns but", "train.tsv has 2"],
        ),
        ("headerless", "  header: false\n", ["r.yaml:3: data.text: 'text' names no column", "header: false"]),
    ],
)
def test_bad_layouts_are_named_at_validate(layouts, tmp_path, kind, extra, needles):
    _one_line(_validate(layouts, kind, extra, tmp_path), *needles)


def test_a_folder_that_is_no_dataset_and_an_unreachable_hub(layouts, tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "README.md").write_text("not data\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        _recipe(layouts, "canonical").read_text().replace(str(layouts["files"][("canonical", "test")]), str(tmp_path / "notes"))
    )
    _one_line(_cli("validate", recipe), "r.yaml:5: data.test:", "notes is a folder but not a saved dataset")
    recipe.write_text(
        _recipe(layouts, "canonical").read_text().replace(str(layouts["files"][("canonical", "test")]), "hf:ag_news")
    )
    _one_line(_cli("validate", recipe), "r.yaml:5: data.test:", "hf:ag_news", "Hugging Face Hub is not reachable")
    _one_line(_cli("eval", layouts["model"], "--data", "hf:ag_news"), "--data: hf:ag_news", "Hub is not reachable")
    _one_line(_cli("eval", layouts["model"], "--data", tmp_path / "notes"), "--data:", "not a saved dataset")


@pytest.mark.parametrize(
    "options,needles",
    [
        (["--sep", ";;"], ["--sep: must be one character"]),
        (["--no-header", "--text", "0", "--label", "5"], ["--label: column 5 is out of range", "has 2 columns"]),
        (["--no-header", "--columns", "a,b,c"], ["--columns: names 3 columns but"]),
        (["--format", "jsonl", "--sep", ";"], ["--sep: is for csv / tsv / txt tables, not format jsonl"]),
    ],
)
def test_bad_eval_options_are_named(layouts, options, needles):
    r = _cli("eval", layouts["model"], "--data", layouts["files"][("headerless", "test")], *options)
    _one_line(r, *needles)
