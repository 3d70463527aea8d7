"""Bad input through the real command line: one "error:" line naming the file or field, exit code 2.

Recipe mistakes go through ``python -m compressor validate`` in a subprocess (fast: no torch).
Bad data and bad models need ``run``; every case runs in-process through the same typer app
(``CliRunner``: the real argument parsing, error handling and exit codes, without paying the torch
import per case) and a few representative ones also as real subprocesses. Every case checks that
nothing is written outside the chosen output directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from compressor import testing as T

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "NO_COLOR": "1", "COLUMNS": "200"}

BASE = """\
name: case
model:
  path: MODEL_PATH
  num_labels: 2
data:
  train: train.csv
  split: {dev: 0.2}
  max_length: 32
stages:
  - finetune: {max_steps: 1, batch_size: 8}
evaluate: {splits: [dev], artifacts: [torch]}
bench: {enabled: false}
"""
# line numbers in BASE: 3 model.path, 4 num_labels, 6 data.train, 10 stages.0, 11 evaluate, 12 bench


# ------------------------------------------------------------------ helpers
def _snapshot(root: Path, skip: Path | None = None) -> dict[str, tuple]:
    out = {}
    for p in sorted(root.rglob("*")):
        if skip is not None and (p == skip or skip in p.parents):
            continue
        st = p.lstat()
        out[str(p.relative_to(root))] = (p.is_dir(), st.st_size if p.is_file() else 0, st.st_mtime_ns if p.is_file() else 0)
    return out


def _one_error_line(code: int, stdout: str, stderr: str, *needles: str, exit_code: int = 2) -> str:
    assert "Traceback" not in stdout + stderr, stdout + stderr
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, f"stderr is not one line:\n{stderr}"
    line = lines[0]
    print(f"exit {code}: {line}")  # shown when a test fails
    assert line.startswith("error: "), line
    for needle in needles:
        assert needle in line, f"{needle!r} not in {line!r}"
    assert code == exit_code, (code, line)
    return line


def _subprocess(args: list[str], cwd: Path) -> tuple[int, str, str]:
    r = subprocess.run([sys.executable, "-m", "compressor", *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)
    return r.returncode, r.stdout, r.stderr


def _in_process(args: list[str], cwd: Path, monkeypatch) -> tuple[int, str, str]:
    from typer.testing import CliRunner

    from compressor.cli.commands import app

    monkeypatch.chdir(cwd)
    r = CliRunner().invoke(app, args, env={"NO_COLOR": "1", "COLUMNS": "200"})
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_dir) -> dict[str, Path]:
    """The good tiny BERT and broken copies of it."""
    root = tmp_path_factory.mktemp("models")
    good = tiny_dir / "bert"
    out = {"good": good, "gpt2": tiny_dir / "gpt2"}

    def copy(name: str) -> Path:
        dst = root / name
        shutil.copytree(good, dst)
        return dst

    out["noweights"] = copy("noweights")
    (out["noweights"] / "model.safetensors").unlink()
    out["mismatch"] = copy("mismatch")
    cfg = json.loads((out["mismatch"] / "config.json").read_text())
    cfg["hidden_size"] = 64  # weights are 32 wide
    (out["mismatch"] / "config.json").write_text(json.dumps(cfg))
    out["notokenizer"] = copy("notokenizer")
    for f in out["notokenizer"].iterdir():
        if f.name not in ("config.json", "model.safetensors"):
            f.unlink()
    out["badconfig"] = copy("badconfig")
    (out["badconfig"] / "config.json").write_text('{"model_type": "bert", ')
    out["truncated"] = copy("truncated")
    w = out["truncated"] / "model.safetensors"
    w.write_bytes(w.read_bytes()[:200])
    return out


def _case_dir(tmp_path: Path, data: bytes | str | None = None) -> Path:
    d = tmp_path / "case"
    d.mkdir()
    if data is None:
        T.write_sentiment_csv(d / "train.csv", n=60, label_names=("0", "1"))
    elif isinstance(data, bytes):
        (d / "train.csv").write_bytes(data)
    else:
        (d / "train.csv").write_text(data, encoding="utf-8")
    (tmp_path / "cwd").mkdir()
    return d


# ------------------------------------------------------------------ recipes: validate (subprocess)
def _edit(old: str, new: str, text: str = BASE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


RECIPE_CASES = [
    (
        "unknown-key",
        _edit("  num_labels: 2", "  num_label: 2"),
        "recipe.yaml:4: model.num_label: unknown key; did you mean 'num_labels'?",
    ),
    (
        "wrong-type",
        _edit("max_length: 32", "max_length: long"),
        "recipe.yaml:8: data.max_length: input should be a valid integer",
    ),
    (
        "out-of-range",
        _edit("max_steps: 1,", "max_steps: 0,"),
        "recipe.yaml:10: stages.0.finetune.max_steps: input should be greater than or equal to 1",
    ),
    (
        "unknown-stage",
        _edit("  - finetune:", "  - finetuen:"),
        "recipe.yaml:10: stages.0: unknown stage 'finetuen'; did you mean 'finetune'?",
    ),
    (
        "unknown-quantize",
        _edit("evaluate:", "  - quantize: {type: int3}\nevaluate:"),
        "recipe.yaml:11: stages.1.quantize.type: unknown type 'int3'",
    ),
    ("yaml-syntax", _edit("  split: {dev: 0.2}", "  split: {dev: 0.2"), "recipe.yaml:8: YAML syntax error"),
    ("missing-section", "name: x\nmodel: {path: m}\n", "recipe.yaml:1: data: required field is missing"),
    (
        "duplicate-key",
        _edit("  max_length: 32", "  max_length: 32\n  max_length: 64"),
        "recipe.yaml:9: duplicate key 'max_length'",
    ),
    ("not-a-mapping", "- model\n- data\n", "recipe.yaml:1: the top level must be a mapping"),
    ("empty", "", "recipe.yaml:1: empty recipe"),
    (
        "nan",
        _edit("  split: {dev: 0.2}", "  split: {dev: .nan}"),
        "recipe.yaml:7: data.split.dev: input should be a finite number",
    ),
    ("run-name-escape", _edit("name: case", "name: ../../etc"), "recipe.yaml:1: name: run name may"),
    (
        "quantize-before-export",
        _edit("evaluate:", "  - quantize: {type: dynamic}\n  - export: {}\nevaluate:"),
        "recipe.yaml:11: stages.1.quantize: quantize {type: dynamic} works on the ONNX model",
    ),
    ("python-tag", _edit("name: case", "name: !!python/object/apply:os.system [touch pwned]"), "recipe.yaml:1:"),
    (
        "alias-bomb",
        BASE
        + "x: &a [1,1,1,1,1,1,1,1,1,1]\n"
        + "".join(f"x{i}: &a{i} [" + ",".join([f"*a{i - 1}" if i > 1 else "*a"] * 10) + "]\n" for i in range(1, 8)),
        "alias bomb",
    ),
    ("not-utf8", "name: caf\xe9\n".encode("latin-1"), "recipe.yaml: not UTF-8"),
]


@pytest.mark.parametrize("text, needle", [c[1:] for c in RECIPE_CASES], ids=[c[0] for c in RECIPE_CASES])
def test_bad_recipe_validate(tmp_path, text, needle):
    p = tmp_path / "recipe.yaml"
    p.write_bytes(text if isinstance(text, bytes) else text.replace("MODEL_PATH", "models/tiny").encode())
    before = _snapshot(tmp_path)
    code, out, err = _subprocess(["validate", "recipe.yaml"], tmp_path)
    _one_error_line(code, out, err, needle)
    assert _snapshot(tmp_path) == before


def test_bad_set_names_the_set(tmp_path):
    (tmp_path / "recipe.yaml").write_text(BASE.replace("MODEL_PATH", "m"))
    code, out, err = _subprocess(["validate", "recipe.yaml", "--set", "stages.0.finetune.lr=2"], tmp_path)
    _one_error_line(
        code, out, err, "recipe.yaml (--set 'stages.0.finetune.lr=2'): stages.0.finetune.lr: input should be less than 1"
    )
    code, out, err = _subprocess(["validate", "recipe.yaml", "--set", "stages.5.finetune.lr=0.1"], tmp_path)
    _one_error_line(code, out, err, "--set 'stages.5.finetune.lr=0.1': stages has no item 5")


def test_missing_recipe_file(tmp_path):
    code, out, err = _subprocess(["validate", "nope.yaml"], tmp_path)
    _one_error_line(code, out, err, "nope.yaml: no such file")


def test_bad_recipe_run_writes_nothing(tmp_path, monkeypatch):
    (tmp_path / "recipe.yaml").write_text(_edit("  num_labels: 2", "  num_label: 2").replace("MODEL_PATH", "m"))
    before = _snapshot(tmp_path)
    code, out, err = _in_process(["run", "recipe.yaml", "--output", str(tmp_path / "out")], tmp_path, monkeypatch)
    _one_error_line(code, out, err, "recipe.yaml:4: model.num_label")
    assert _snapshot(tmp_path) == before and not (tmp_path / "out").exists()


# ------------------------------------------------------------------ data and models: run
RAGGED = "text,label\nthe movie was good,1\nthe plot\nbad film,0\n"
RUN_CASES = {
    # id: (model key or path, train.csv content (None: good data), needles, in a subprocess too[, recipe edits])
    "data-empty": ("good", "", ["train.csv: file is empty"], False),
    "data-missing-column": (
        "good",
        "sentence,label\na,1\nb,0\n",
        ["train.csv: missing column 'text'", "columns are: sentence, label"],
        False,
    ),
    "data-label-outside-num-labels": (
        "good",
        "text,label\na good,0\nb bad,1\nc odd,5\nd,0\n",
        ["train.csv: row 4: label 5 is outside 0..1"],
        False,
    ),
    "data-not-utf8": ("good", b"text,label\nfine,1\ncaf\xe9 bad,0\n", ["train.csv: not valid utf-8", "data.encoding"], False),
    "data-ragged-csv": ("good", RAGGED, ["train.csv: malformed csv: line 3 has 1 fields"], True),
    "model-missing-weights": ("noweights", None, ["noweights", "model.safetensors"], False),
    "model-shape-mismatch": ("mismatch", None, ["mismatch", "config and weights disagree", "(32,)", "(64,)"], True),
    "model-no-tokenizer": ("notokenizer", None, ["notokenizer", "no tokenizer files"], False),
    "model-bad-config-json": ("badconfig", None, ["badconfig", "config.json"], False),
    "model-truncated-weights": ("truncated", None, ["truncated"], False),
    "model-nonexistent-path": (
        "/nonexistent/model/dir",
        None,
        ["model.path: /nonexistent/model/dir: no such file or directory"],
        False,
    ),
    "model-nonexistent-hub-like": ("no-such/model", None, ["model no-such/model: not a local directory"], False),
    "model-is-a-file": ("good/config.json", None, ["config.json: is a file"], False),
    # a new 3-class head may be sized afresh, but that must not hide a mismatch in the encoder
    "model-shape-mismatch-new-head": (
        "mismatch",
        "text,label\na,0\nb,1\nc,2\nd,0\ne,1\nf,2\n",
        ["config and weights disagree", "bert."],
        False,
        [("num_labels: 2", "num_labels: 3")],
    ),
    "model-encoder-for-causal-lm": (
        "good",
        None,
        ["architecture 'bert' is an encoder", "causal"],
        False,
        [("  num_labels: 2", "  task: causal-lm")],
    ),
}


def _run_case(tmp_path, models, case):
    model, data, needles, _, *edits = RUN_CASES[case]
    if model in models:
        model_path = models[model]
    elif model.startswith("good/"):
        model_path = models["good"] / model.split("/", 1)[1]
    else:
        model_path = model
    d = _case_dir(tmp_path, data)
    text = BASE.replace("MODEL_PATH", str(model_path))
    for old, new in edits[0] if edits else []:
        text = _edit(old, new, text)
    (d / "recipe.yaml").write_text(text)
    return d, needles


def _check_run_failure(tmp_path, models, code, out, err, needles, before, models_before):
    _one_error_line(code, out, err, *needles)
    out_dir = tmp_path / "out"
    assert _snapshot(tmp_path, skip=out_dir) == before, "wrote outside the output directory"
    assert _snapshot(models["good"].parent) == models_before, "touched the model directory"
    status = out_dir / "case" / "status"
    if status.exists():  # the run got as far as creating its directory: it must say it failed
        assert status.read_text().startswith("failed: ")


@pytest.mark.parametrize("case", list(RUN_CASES))
def test_bad_run_in_process(tmp_path, models, monkeypatch, case):
    d, needles = _run_case(tmp_path, models, case)
    before, models_before = _snapshot(tmp_path), _snapshot(models["good"].parent)
    code, out, err = _in_process(
        ["run", str(d / "recipe.yaml"), "--output", str(tmp_path / "out")], tmp_path / "cwd", monkeypatch
    )
    _check_run_failure(tmp_path, models, code, out, err, needles, before, models_before)


@pytest.mark.parametrize("case", [c for c, v in RUN_CASES.items() if v[3]])
def test_bad_run_subprocess(tmp_path, models, case):
    d, needles = _run_case(tmp_path, models, case)
    before, models_before = _snapshot(tmp_path), _snapshot(models["good"].parent)
    code, out, err = _subprocess(["run", str(d / "recipe.yaml"), "--output", str(tmp_path / "out")], tmp_path / "cwd")
    _check_run_failure(tmp_path, models, code, out, err, needles, before, models_before)
    assert (tmp_path / "out" / "case" / "status").read_text().startswith("failed: ")


def test_debug_shows_the_traceback(tmp_path):
    (tmp_path / "recipe.yaml").write_text(_edit("  num_labels: 2", "  num_label: 2").replace("MODEL_PATH", "m"))
    code, out, err = _subprocess(["--debug", "validate", "recipe.yaml"], tmp_path)
    assert code != 0
    assert "Traceback" in err and "RecipeError" in err and "recipe.yaml:4: model.num_label: unknown key" in err


def test_debug_shows_the_traceback_of_a_run(tmp_path, models, monkeypatch):
    """--debug (before or after the command) prints the traceback, then the same one line; a user mistake still exits 2."""
    d, _ = _run_case(tmp_path, models, "data-missing-column")
    for args in (["--debug", "run"], ["run", "--debug"]):
        out = tmp_path / f"out{len(args[0])}"
        code, _, err = _in_process([*args, str(d / "recipe.yaml"), "--output", str(out)], tmp_path / "cwd", monkeypatch)
        assert code == 2, err
        assert "Traceback" in err and "DataError" in err
        assert err.strip().splitlines()[-1].startswith("error: ") and "missing column 'text'" in err.strip().splitlines()[-1]


# ------------------------------------------------------------------ a run that fails part-way
def test_run_failing_mid_way_is_marked_failed(tmp_path, models, monkeypatch):
    d = _case_dir(tmp_path)
    # the finetune stage runs (one step), then pruning finds no module named like the pattern (only the
    # model's modules can tell; `validate` reads config.json only)
    (d / "recipe.yaml").write_text(
        _edit(
            "evaluate:", "  - prune: {type: unstructured, sparsity: 0.5, include: [nothing_is_called_this]}\nevaluate:"
        ).replace("MODEL_PATH", str(models["good"]))
    )
    code, out, err = _in_process(["run", str(d / "recipe.yaml"), "-o", str(tmp_path / "out")], tmp_path / "cwd", monkeypatch)
    _one_error_line(code, out, err, "recipe.yaml:11: stages.1.prune.include.0")
    run_dir = tmp_path / "out" / "case"
    status = (run_dir / "status").read_text().strip()
    assert status.startswith("failed: ") and "matches no Linear module" in status and status != "complete"
    assert (run_dir / "checkpoints" / "stage-0-finetune" / "done.json").is_file()  # the first stage did run
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "report.md").exists()
    assert "run failed" in (run_dir / "log.txt").read_text()


def test_crash_inside_a_stage_is_marked_failed(tmp_path, models, monkeypatch):
    """Not a user error: exit code 1 and an "internal error" line, and still status failed."""
    import compressor.pipeline.orchestrate as P
    from compressor.core.registry import STAGES

    d = _case_dir(tmp_path)
    (d / "recipe.yaml").write_text(BASE.replace("MODEL_PATH", str(models["good"])))
    P._register_stages()

    def boom(ctx, cfg):
        raise RuntimeError("simulated crash in the finetune stage")

    monkeypatch.setattr(STAGES, "get", lambda cfg: boom)
    code, out, err = _in_process(["run", str(d / "recipe.yaml"), "-o", str(tmp_path / "out")], tmp_path / "cwd", monkeypatch)
    _one_error_line(code, out, err, "internal error: RuntimeError: simulated crash", "--debug", exit_code=1)
    assert (tmp_path / "out" / "case" / "status").read_text().strip() == "failed: simulated crash in the finetune stage"
