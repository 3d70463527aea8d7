"""Values that used to validate and then crash with "internal error" (issue 23): each is now one line, exit 2.

Recipe values go through ``python -m compressor validate`` / ``plan`` in a subprocess (no torch);
``compare``, ``bench`` and ``run -o FILE`` run in-process through the typer app.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from test_bad_inputs import _in_process  # noqa: E402  (the same CLI helpers, one place)
from test_bad_inputs import _subprocess as _cli  # noqa: E402

from compressor import testing as T

RECIPE = """\
name: holes
model: {path: MODEL, num_labels: 2}
data: {train: train.csv, split: {dev: 0.2}, max_length: 32}
stages:
  - finetune: {max_steps: 1, batch_size: 8}
bench: {enabled: false}
"""


def one_line(code: int, out: str, err: str, *needles: str) -> str:
    assert "Traceback" not in out + err and "internal error" not in err, err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    # `eval` logs what it read before it fails (rows read, used): the error is the one and last "error:" line
    lines = lines[-1:] if [ln for ln in lines if ln.startswith("error: ")] == lines[-1:] else lines
    assert len(lines) == 1, err
    assert lines[0].startswith("error: "), lines[0]
    for n in needles:
        assert n in lines[0], (n, lines[0])
    assert len(lines[0]) < 400, lines[0]  # a 5000-digit value is not echoed back in full
    assert code == 2, (code, lines[0])
    return lines[0]


@pytest.fixture
def case(tmp_path, tiny_dir) -> Path:
    T.write_sentiment_csv(tmp_path / "train.csv", n=40)
    (tmp_path / "recipe.yaml").write_text(RECIPE.replace("MODEL", str(tiny_dir / "bert")))
    return tmp_path


BIG = "9" * 5000
VALIDATE_CASES = {
    "5000-digit-seed": (["--set", f"seed={BIG}"], ["--set 'seed=999", "5000 digits"]),
    "5000-digit-steps": (["--set", f"stages.0.finetune.max_steps={BIG}"], ["5000 digits"]),
    "huge-steps": (
        ["--set", "stages.0.finetune.max_steps=99999999999999"],
        ["stages.0.finetune.max_steps", "less than or equal to 1000000000"],
    ),
    "empty-train": (["--set", "data.train="], ["data.train: empty path"]),
    "empty-model-path": (["--set", "model.path="], ["model.path: empty path"]),
    "blank-dev": (["--set", "data.dev=' '"], ["data.dev: empty path"]),
    "pkg-dotdot": (["--set", "data.train=pkg://compressor/../../../../../../etc/passwd"], ["data.train", "'..'"]),
    "pkg-double-slash": (["--set", "data.train=pkg://compressor//etc/passwd"], ["data.train", "'//'"]),
    "max-length-over-positions": (
        ["--set", "data.max_length=4096"],
        ["data.max_length: 4096 is too long", "128 tokens (max_position_embeddings"],
    ),
    "bench-seq-over-positions": (
        ["--set", "bench.enabled=true", "--set", "bench.seq_lengths=[64, 1024]"],
        ["bench.seq_lengths.1: 1024 is too long"],
    ),
    "student-layer-missing": (
        ["--set", "stages=[{distill: {student: {layers: [0, 5]}, max_steps: 1}}]"],
        ["stages.0.distill.student.layers.1: layer 5 does not exist", "0..1"],
    ),
}


@pytest.mark.parametrize("command", ["validate", "plan"])
@pytest.mark.parametrize("name", list(VALIDATE_CASES))
def test_validate_and_plan_refuse(case, command, name):
    args, needles = VALIDATE_CASES[name]
    before = sorted(p.name for p in case.iterdir())
    one_line(*_cli([command, "recipe.yaml", *args], case), *needles)
    assert sorted(p.name for p in case.iterdir()) == before


def test_5000_digit_integer_in_the_file(case):
    text = (case / "recipe.yaml").read_text().replace("name: holes", f"name: holes\nseed: {BIG}")
    (case / "recipe.yaml").write_text(text)
    for command in ("validate", "plan"):
        one_line(*_cli([command, "recipe.yaml"], case), "recipe.yaml:2: a number of 5000 digits")


def test_pkg_escape_refused_when_resolved(tmp_path):
    """The resolver applies the same rule (a recipe built in code skips the schema's spelling check)."""
    from compressor.core.errors import CompressorError
    from compressor.models import resolve

    for spec in (
        "pkg://compressor/../../../../../../../../etc/passwd",
        "pkg://compressor//etc/passwd",
        "pkg://compressor/recipe/../../../etc/passwd",
    ):
        with pytest.raises(CompressorError, match="data.train: pkg://"):
            resolve(spec, tmp_path, "data.train")
    assert resolve("pkg://compressor/recipe/loader.py", tmp_path, "x").name == "loader.py"
    link_pkg = tmp_path / "pkgs" / "leaky"
    link_pkg.mkdir(parents=True)
    (link_pkg / "__init__.py").write_text("")
    (link_pkg / "out").symlink_to("/etc")
    sys.path.insert(0, str(link_pkg.parent))
    try:
        with pytest.raises(CompressorError, match="leads outside package 'leaky'"):
            resolve("pkg://leaky/out/passwd", tmp_path, "data.train")
    finally:
        sys.path.remove(str(link_pkg.parent))


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_config_json_that_is_a_list(case, command):
    model = case / "listmodel"
    model.mkdir()
    (model / "config.json").write_text("[1, 2, 3]")
    one_line(
        *_cli([command, "recipe.yaml", "--set", f"model.path={model}"], case),
        "listmodel/config.json: not a model config (a JSON list",
    )


def test_plan_survives_odd_config_values(case, tiny_dir):
    model = case / "odd"
    shutil.copytree(tiny_dir / "bert", model)
    cfg = json.loads((model / "config.json").read_text())
    cfg.update(hidden_size="wide", num_hidden_layers=[2], max_position_embeddings="many")
    (model / "config.json").write_text(json.dumps(cfg))
    code, out, err = _cli(["plan", "recipe.yaml", "--set", f"model.path={model}"], case)
    assert code == 0 and "Traceback" not in err, err


def test_run_output_is_a_file(case, monkeypatch):
    (case / "afile").write_text("not a folder\n")
    line = one_line(
        *_in_process(["run", "recipe.yaml", "-o", "afile"], case, monkeypatch), "afile: exists and is not a directory"
    )
    assert "holes" in line and (case / "afile").read_text() == "not a folder\n"


def test_bench_on_a_corrupt_onnx_beside_a_tokenizer(tmp_path, tiny_dir, monkeypatch):
    folder = tmp_path / "onnx"
    shutil.copytree(tiny_dir / "bert", folder)
    (folder / "model.onnx").write_bytes(b"\x08\x07garbage that is no protobuf" * 10)
    one_line(
        *_in_process(["bench", str(folder / "model.onnx"), "--iterations", "1", "--warmup", "0"], tmp_path, monkeypatch),
        "model.onnx: not a readable ONNX model",
    )
    one_line(
        *_in_process(["eval", str(folder / "model.onnx"), "--data", str(tiny_dir / "sent.csv")], tmp_path, monkeypatch),
        "model.onnx",
    )


def _fake_run(folder: Path, metrics) -> Path:
    folder.mkdir(parents=True)
    (folder / "status").write_text("complete\n")
    (folder / "metrics.json").write_text(metrics if isinstance(metrics, str) else json.dumps(metrics))
    return folder


@pytest.fixture(scope="module")
def good(tiny_dir, tmp_path_factory) -> dict:
    """A real metrics.json (two finetune steps, an export, a tiny benchmark)."""
    from compressor.pipeline.orchestrate import run

    d = tmp_path_factory.mktemp("good")
    (d / "recipe.yaml").write_text(
        RECIPE.replace("MODEL", str(tiny_dir / "bert"))
        .replace("train.csv", str(tiny_dir / "sent.csv"))
        .replace(
            "bench: {enabled: false}",
            "  - export: {}\nbench: {batch_sizes: [1], seq_lengths: [16], iterations: 1, warmup: 0, devices: [cpu]}",
        )
    )
    return json.loads((run(d / "recipe.yaml", output_dir=str(d / "runs"), quiet=True) / "metrics.json").read_text())


def _malformed(good: dict, name: str):
    m = json.loads(json.dumps(good))
    if name == "not-json":
        return '{"artifacts": '
    if name == "a-list":
        return [1, 2]
    if name == "metric-name-dict":
        m["primary_metric"]["name"] = {"a": 1}
    elif name == "size-a-list":
        m["artifacts"]["pytorch"]["size_bytes"] = [1]
    elif name == "bench-a-number":
        m["artifacts"]["onnx"]["bench"] = 3
    elif name == "history-a-number":
        m["stages"][0]["history"] = 1.5
    elif name == "stage-a-bool":
        m["stages"][0] = True
    return m


MALFORMED = ["not-json", "a-list", "metric-name-dict", "size-a-list", "bench-a-number", "history-a-number", "stage-a-bool"]


@pytest.mark.parametrize("name", MALFORMED)
def test_compare_malformed_metrics(tmp_path, monkeypatch, good, name):
    ok = _fake_run(tmp_path / "good", good)
    bad = _fake_run(tmp_path / "bad", _malformed(good, name))
    code, out, err = _in_process(["compare", str(ok), str(bad), "-o", str(tmp_path / "cmp")], tmp_path, monkeypatch)
    one_line(code, out, err, "bad/metrics.json")
    assert not (tmp_path / "cmp").exists()  # nothing written


def test_compare_output_is_a_file(tmp_path, monkeypatch, good):
    a, b = _fake_run(tmp_path / "a", good), _fake_run(tmp_path / "b", good)
    (tmp_path / "afile").write_text("x")
    one_line(
        *_in_process(["compare", str(a), str(b), "-o", "afile"], tmp_path, monkeypatch), "afile: exists and is not a directory"
    )
    code, out, err = _in_process(["compare", str(a), str(b), "-o", "cmp"], tmp_path, monkeypatch)
    assert code == 0, err  # the good pair renders


# ------------------------------------------------------------------ a config that disagrees with its weights
@pytest.mark.parametrize(
    "layers, needle",
    [(3, "weights the config needs are not in the checkpoint"), (1, "checkpoint weights have no place in the model")],
)
def test_config_declaring_other_layers_than_the_weights(case, tiny_dir, monkeypatch, layers, needle):
    """8 layers declared over 6-layer weights only warned, then evaluated a partly random model."""
    model = case / "edited"
    shutil.copytree(tiny_dir / "bert", model)
    cfg = json.loads((model / "config.json").read_text())
    cfg["num_hidden_layers"] = layers  # the weights hold 2
    (model / "config.json").write_text(json.dumps(cfg))
    one_line(
        *_in_process(["run", "recipe.yaml", "--set", f"model.path={model}", "-o", "out"], case, monkeypatch),
        "config and weights disagree",
        needle,
        "num_hidden_layers",
    )
    one_line(
        *_in_process(["eval", str(model), "--data", "train.csv", "--labels", "negative,positive"], case, monkeypatch),
        "config and weights disagree",
    )


# ------------------------------------------------------------------ an ONNX classifier that does not fit the labels
def _graph(path: Path, kind: str) -> Path:
    """A tiny ONNX graph over (input_ids, attention_mask) whose output is not a 2-label classifier's."""
    import onnx
    from onnx import TensorProto, helper

    ids = helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"])
    mask = helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])
    if kind == "int64-batch-seq":
        nodes = [helper.make_node("Add", ["input_ids", "attention_mask"], ["logits"])]
        out = helper.make_tensor_value_info("logits", TensorProto.INT64, ["batch", "seq"])
        inits = []
    else:
        n = 7 if kind == "seven-static" else 1
        inits = [helper.make_tensor("w", TensorProto.FLOAT, [1, 7], [0.1 * i for i in range(7)])]
        nodes = [
            helper.make_node("Cast", ["input_ids"], ["f"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMean", ["f"], ["m"], axes=[1], keepdims=1),
            helper.make_node("Mul", ["m", "w"], ["logits"]),
        ]
        out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 7 if n == 7 else "classes"])
    graph = helper.make_graph(nodes, "g", [ids, mask], [out], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    "kind, needle",
    [
        ("seven-static", "has 7 classes but the data has 2 labels"),
        ("seven-dynamic", "7"),
        ("int64-batch-seq", "is tensor(int64)"),
    ],
)
def test_onnx_output_incompatible_with_the_labels(tmp_path, tiny_dir, monkeypatch, kind, needle):
    folder = tmp_path / "graph"
    folder.mkdir()
    for f in (tiny_dir / "bert").iterdir():
        if f.name.startswith(("tokenizer", "vocab")):
            shutil.copy(f, folder / f.name)
    path = _graph(folder / "model.onnx", kind)
    one_line(
        *_in_process(
            ["eval", str(path), "--data", str(tiny_dir / "sent.csv"), "--labels", "negative,positive"], tmp_path, monkeypatch
        ),
        "model.onnx: not a sequence-classification graph for this data",
        needle,
    )


def test_onnx_output_check_in_the_run_harness(tmp_path, tiny_dir):
    """evaluate_onnx (what `compressor run` uses) refuses a graph with the wrong class count too."""
    from compressor import data as D
    from compressor.core.errors import ExportError
    from compressor.measure.evaluate import evaluate_onnx
    from compressor.models import load_tokenizer

    path = _graph(tmp_path / "m.onnx", "seven-dynamic")
    tok = load_tokenizer(tiny_dir / "bert")
    split = D.Split(["a good film", "a bad film"], np.array([1, 0]))
    loader = D.make_loader(D.encode_split(split, tok, 16), tok, 2, shuffle=False)
    with pytest.raises(ExportError, match=r"(7 classes but the data has 2|shape \[2, 7\]).*expected \(batch, 2\) float logits"):
        evaluate_onnx(path, loader, "sequence-classification", num_labels=2)
    assert evaluate_onnx(path, loader, "sequence-classification", num_labels=7)["n"] == 2


def test_logits_checked_per_batch():
    """A dynamic output dimension is only known once a batch ran."""
    from compressor.core.errors import ExportError
    from compressor.measure.evaluate import check_logits

    check_logits(np.zeros((4, 3), np.float32), "m.onnx", "sequence-classification", 3, 4)
    check_logits(np.zeros((4, 5, 9), np.float16), "m.onnx", "causal-lm", None, 4)
    for logits, n in (
        (np.zeros((4, 7), np.float32), 3),
        (np.zeros((4, 12), np.int64), None),
        (np.zeros((4, 3, 2)), 3),
        (np.zeros((2, 3), np.float32), 3),
    ):
        with pytest.raises(ExportError, match="m.onnx: not a sequence-classification graph"):
            check_logits(logits, "m.onnx", "sequence-classification", n, 4)
    with pytest.raises(ExportError, match="causal-lm"):
        check_logits(np.zeros((4, 9), np.float32), "m.onnx", "causal-lm", None, 4)
