"""Standalone commands on tiny models: export, eval, bench, plan."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from compressor.cli.commands import app
from tests.conftest import write_recipe


def _cli(*args):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "200", "NO_COLOR": "1"})


@pytest.fixture(scope="module")
def classifier(tiny_dir, tmp_path_factory):
    """The tiny BERT with large random weights and named labels: its predictions vary from example to example,
    so equal metrics for ONNX and PyTorch mean something (the fresh tiny model predicts one class for everything)."""
    import shutil

    import torch
    from transformers import AutoModelForSequenceClassification

    out = tmp_path_factory.mktemp("classifier") / "bert"
    shutil.copytree(tiny_dir / "bert", out)
    model = AutoModelForSequenceClassification.from_pretrained(out)
    torch.manual_seed(1)
    for param in model.parameters():
        if param.dim() == 2:
            torch.nn.init.normal_(param, std=1.0)
    model.config.id2label, model.config.label2id = {0: "negative", 1: "positive"}, {"negative": 0, "positive": 1}
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def exported(classifier, tiny_dir, tmp_path_factory):
    """The classifier exported with --int8, and the tiny GPT-2 exported plain."""
    out = tmp_path_factory.mktemp("export")
    r = _cli("export", classifier, "-o", out / "bert", "--int8")
    assert r.exit_code == 0 and "last layer for [CLS] only" in r.output, r.output
    # 64 sample sentences, and a sentence saying what the agreement figure is
    assert "/64 sentences (" in r.output and "It is not accuracy" in r.output, r.output
    r = _cli("export", tiny_dir / "gpt2", "-o", out / "gpt2", "--no-optimize")
    assert r.exit_code == 0, r.output
    return out


def test_export_writes_onnx_with_parity_and_provenance(exported, classifier):
    bert = exported / "bert"
    for name in ("model.onnx", "model.opt.onnx", "model.int8.onnx", "tokenizer.json", "config.json"):
        assert (bert / name).is_file(), name
    prov = json.loads((bert / "model.onnx.json").read_text())
    assert prov["parity"]["max_abs_diff"] < 1e-3 and prov["parity"]["compared"] > 0
    assert prov["inputs"][:2] == ["input_ids", "attention_mask"] and prov["task"] == "sequence-classification"
    assert prov["source"] == str(classifier.resolve())
    opt = json.loads((bert / "model.opt.onnx.json").read_text())
    assert opt["fusions"] and opt["cls_only_last_layer"]["applied"]  # the classifier reads [CLS] only
    q = json.loads((bert / "model.int8.onnx.json").read_text())
    assert q["source_graph"] == "model.opt.onnx" and q["parity"]["argmax_agreement"] >= 0.5
    assert q["parity"]["compared"] == 64 and "batches of 16" in q["parity_inputs"]
    assert (bert / "model.int8.onnx").stat().st_size < (bert / "model.onnx").stat().st_size
    assert not (exported / "gpt2" / "model.opt.onnx").exists()  # --no-optimize
    lm = json.loads((exported / "gpt2" / "model.onnx.json").read_text())
    assert lm["task"] == "causal-lm" and lm["inputs"] == ["input_ids", "attention_mask"]


def test_export_parity_sample_is_long_short_and_padded(classifier):
    from compressor.models import load_config, load_tokenizer
    from compressor.onnx.folder import PARITY_BATCH, PARITY_SAMPLES, parity_batches

    batches = parity_batches(load_tokenizer(classifier), "sequence-classification", load_config(classifier))
    assert sum(len(b["input_ids"]) for b in batches) == PARITY_SAMPLES >= 64 and len(batches[0]["input_ids"]) == PARITY_BATCH
    lengths = [int(n) for b in batches for n in b["attention_mask"].sum(-1)]
    assert min(lengths) <= 8 and max(lengths) == 128  # a few tokens, and rows truncated at the limit
    assert sum(1 for n in lengths if n < 64) >= PARITY_SAMPLES // 2  # most rows padded in their batch


def test_export_full_last_layer_keeps_every_row(classifier, tmp_path):
    r = _cli("export", classifier, "-o", tmp_path / "full", "--full-last-layer")
    assert r.exit_code == 0 and "[CLS] only" not in r.output, r.output
    opt = json.loads((tmp_path / "full" / "model.opt.onnx.json").read_text())
    assert not opt["cls_only_last_layer"]["applied"] and "off" in opt["cls_only_last_layer"]["reason"]


def test_export_refuses_to_overwrite_without_force(exported, classifier, tiny_dir):
    r = _cli("export", classifier, "-o", exported / "bert")
    assert r.exit_code == 2 and "already exists" in r.output and "--force" in r.output
    r = _cli("export", tiny_dir / "sent.csv")
    assert r.exit_code == 2 and "sent.csv: is a file, not a model directory" in r.output and ".onnx" not in r.output


def _eval(artifact, data, tmp_path, *extra):
    out = tmp_path / f"eval-{abs(hash(str(artifact)))}.json"
    r = _cli("eval", artifact, "--data", data, "--json", out, *extra)
    assert r.exit_code == 0, r.output
    return json.loads(out.read_text())["metrics"]


def test_eval_onnx_equals_eval_model_dir(exported, classifier, tiny_dir, tmp_path):
    data = tiny_dir / "sent.csv"
    torch_m = _eval(classifier, data, tmp_path, "--limit", "150")
    onnx_m = _eval(exported / "bert" / "model.onnx", data, tmp_path, "--limit", "150")
    assert torch_m["n"] == onnx_m["n"] == 150
    assert torch_m["f1_macro"] > 0.4  # both classes predicted: the comparison is not trivial
    assert onnx_m["accuracy"] == torch_m["accuracy"] and onnx_m["f1_macro"] == pytest.approx(torch_m["f1_macro"])
    int8_m = _eval(exported / "bert" / "model.int8.onnx", data, tmp_path, "--limit", "150")
    assert int8_m["n"] == 150 and abs(int8_m["accuracy"] - torch_m["accuracy"]) <= 0.1


def test_eval_causal_lm_onnx_equals_model_dir(exported, tiny_dir, tmp_path):
    data = tiny_dir / "lm.txt"
    torch_m = _eval(tiny_dir / "gpt2", data, tmp_path, "--max-length", "16")
    onnx_m = _eval(exported / "gpt2" / "model.onnx", data, tmp_path, "--max-length", "16")
    assert onnx_m["tokens"] == torch_m["tokens"] > 0
    assert onnx_m["perplexity"] == pytest.approx(torch_m["perplexity"], rel=1e-4)


def test_eval_errors_are_one_line(exported, tiny_dir, tmp_path):
    r = _cli("eval", exported / "bert" / "model.onnx", "--data", tiny_dir / "sent.csv", "--label", "nope")
    assert r.exit_code == 2 and "missing column 'nope'" in r.output and "Traceback" not in r.output
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes((exported / "bert" / "model.onnx").read_bytes())
    r = _cli("eval", lonely, "--data", tiny_dir / "sent.csv")
    assert r.exit_code == 2 and "--tokenizer" in r.output


def test_eval_reads_pkg_data_and_names_it_as_given(exported, classifier, tiny_dir, tmp_path, monkeypatch):
    """--data accepts pkg://<package>/<path> as recipes do, and the line echoes it unmangled."""
    import shutil

    pkg = tmp_path / "site" / "frontdoor_evaldata"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    shutil.copy(tiny_dir / "sent.csv", pkg / "sent.csv")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    out = tmp_path / "pkg.json"
    r = _cli(
        "eval", exported / "bert" / "model.onnx", "--data", "pkg://frontdoor_evaldata/sent.csv", "--limit", "60", "--json", out
    )
    assert r.exit_code == 0, r.output
    assert " on pkg://frontdoor_evaldata/sent.csv (60 examples)" in r.output
    assert json.loads(out.read_text())["data"] == "pkg://frontdoor_evaldata/sent.csv"
    plain = _eval(exported / "bert" / "model.onnx", tiny_dir / "sent.csv", tmp_path, "--limit", "60")
    assert json.loads(out.read_text())["metrics"] == plain
    r = _cli("eval", exported / "bert" / "model.onnx", "--data", "pkg://frontdoor_evaldata/nope.csv")
    assert r.exit_code == 2 and "--data: pkg://frontdoor_evaldata/nope.csv" in r.output


def test_eval_names_what_is_wrong_with_the_artifact_first(exported, tiny_dir, tmp_path):
    fake = tmp_path / "fake" / "model.onnx"  # a tokenizer beside it, but the bytes are no ONNX model
    fake.parent.mkdir()
    for f in (exported / "bert").iterdir():
        if f.suffix in (".txt", ".json") and not f.name.startswith("model"):
            (fake.parent / f.name).write_bytes(f.read_bytes())
    fake.write_text("this is not a protobuf\n" * 20)
    r = _cli("eval", fake, "--data", tiny_dir / "sent.csv")
    assert r.exit_code == 2 and "not a readable ONNX model" in r.output and "tokenizer" not in r.output, r.output
    (tmp_path / "lonely").mkdir()
    lonely = tmp_path / "lonely" / "model.onnx"
    lonely.write_text("garbage")
    r = _cli("eval", lonely, "--data", tiny_dir / "sent.csv")
    assert r.exit_code == 2 and "not a readable ONNX model" in r.output, r.output
    report = tmp_path / "report.md"
    report.write_text("# a report\n")
    r = _cli("eval", report, "--data", tiny_dir / "sent.csv")
    assert r.exit_code == 2 and "report.md: is a file, not a model directory" in r.output and "or an .onnx file" in r.output


def test_eval_data_errors_name_the_options(exported, tiny_dir, tmp_path):
    bad = tmp_path / "latin.csv"
    bad.write_bytes("text,label\ncaf\xe9 au lait,positive\nbad,negative\n".encode("latin-1"))
    r = _cli("eval", exported / "bert" / "model.onnx", "--data", bad)
    assert r.exit_code == 2 and "--encoding" in r.output and "data.encoding" not in r.output, r.output
    r = _cli("eval", exported / "bert" / "model.onnx", "--data", bad, "--encoding", "latin-1")
    assert r.exit_code == 0, r.output


def test_bench_measures_each_artifact(exported, classifier, tmp_path):
    out = tmp_path / "bench.json"
    arts = [classifier, exported / "bert" / "model.onnx", exported / "bert" / "model.int8.onnx"]
    r = _cli(
        "bench",
        *arts,
        "--batch-sizes",
        "1,2",
        "--seq-lengths",
        "16",
        "--iterations",
        "3",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--json",
        out,
    )
    assert r.exit_code == 0, r.output
    assert "p50 ms" in r.output and "measured on" in r.output
    data = json.loads(out.read_text())
    rows = data["rows"]
    assert len(rows) == 6 and [r["artifact"] for r in rows[::2]] == [str(a) for a in arts]
    assert {r["runtime"] for r in rows} == {"torch", "onnxruntime"}
    for row in rows:
        assert row["p50_ms"] > 0 and row["p90_ms"] >= row["p50_ms"] and row["iterations"] == 3
    assert data["settings"]["batch_sizes"] == [1, 2] and "cpu" in data["fingerprint"]


def test_bench_rejects_bad_settings(exported, tiny_dir):
    r = _cli("bench", tiny_dir / "bert", "--batch-sizes", "0,x")
    assert r.exit_code == 2 and "--batch-sizes" in r.output
    r = _cli("bench", exported / "bert" / "model.onnx", "--seq-lengths", "4096")
    assert r.exit_code == 2 and "longer than the model's 128 positions" in r.output
    r = _cli("bench", exported / "bert" / "missing.onnx")
    assert r.exit_code == 2 and "no such ONNX file" in r.output


# ---------------------------------------------------------------- plan
VNNI = {
    "cpu": "Test CPU",
    "cores": 8,
    "cpu_flags": ["avx2", "avx512f", "avx512_vnni"],
    "gpu": None,
    "arch": "x86_64",
    "ort_providers": ["CPUExecutionProvider"],
}
AVX2 = {**VNNI, "cpu_flags": ["avx2"]}


@pytest.fixture
def plan_recipe(tiny_dir, tmp_path):
    from compressor.recipe import load_recipe

    path = write_recipe(
        tmp_path,
        f"""
name: plan
model: {{path: {tiny_dir / "bert"}}}
data: {{train: {tiny_dir / "sent.csv"}}}
stages:
  - distill: {{student: {{layers: [0]}}}}
  - export: {{}}
  - quantize: {{type: dynamic}}
bench: {{devices: [cpu, cuda]}}
""",
    )
    return load_recipe(path, [])[0], path


def test_plan_says_what_each_stage_buys(plan_recipe):
    from compressor.plan import make_plan

    recipe, path = plan_recipe
    rows = {a.stage: a for a in make_plan(recipe, path.parent, VNNI)}
    assert rows["0 distill"].verdict == "faster + smaller" and "1 layers" in rows["0 distill"].why
    assert "bert" in rows["1 export"].why
    assert rows["2 quantize (dynamic)"].verdict == "faster + smaller" and "avx512_vnni" in rows["2 quantize (dynamic)"].why
    assert rows["bench cuda"].verdict == "skipped"
    slow = {a.stage: a for a in make_plan(recipe, path.parent, AVX2)}["2 quantize (dynamic)"]
    assert "not" not in slow.verdict and "modestly" in slow.verdict and "reduce_range" in slow.why
    gpu = {a.stage: a for a in make_plan(recipe, path.parent, {**VNNI, "gpu": "H100"})}
    assert gpu["bench cuda"].verdict == "measured" and "CPU only" in gpu["2 quantize (dynamic)"].why


def test_plan_on_sparsity_and_missing_export(tiny_dir, tmp_path):
    import json

    from compressor.plan import PlanContext, Shape, stage_advice
    from compressor.recipe import load_recipe
    from compressor.recipe.schema import StructuredPrune, UnstructuredPrune, VocabularyPrune

    config = json.loads((tiny_dir / "bert" / "config.json").read_text())
    ctx = PlanContext(Shape.from_config(config, False), config, False, flags=["avx512_vnni"], arch="x86_64")
    unstructured = stage_advice(UnstructuredPrune(sparsity=0.9), ctx)
    assert "not faster" in unstructured.verdict and "no sparse kernels" in unstructured.why
    structured = stage_advice(StructuredPrune(heads=2, ffn=0.5), ctx)
    assert structured.verdict == "faster + smaller" and "2 of 4 heads" in structured.why and "≈2.0× less" in structured.why
    vocab = stage_advice(VocabularyPrune(), ctx)
    assert vocab.verdict == "smaller, not faster" and "embedding table" in vocab.why
    # a quantization of the graph without an export stage never reaches the advice: the stage contracts refuse it
    path = write_recipe(
        tmp_path,
        f"""model: {{path: {tiny_dir / "bert"}}}
data: {{train: {tiny_dir / "sent.csv"}}}
stages:
  - quantize: {{type: dynamic}}
""",
    )
    r = _cli("plan", path)
    assert r.exit_code == 2 and "recipe.yaml:4: stages.0.quantize: quantize {type: dynamic} works on the ONNX model" in r.output
    with pytest.raises(Exception, match="put an 'export' stage before it"):
        load_recipe(path)


def test_plan_command(plan_recipe):
    _, path = plan_recipe
    r = _cli("plan", path)
    assert r.exit_code == 0, r.output
    assert "machine:" in r.output and "quantize" in r.output and "distill" in r.output


def test_help_lists_the_new_commands():
    r = _cli("--help")
    assert r.exit_code == 0
    for cmd in ("compare", "export", "eval", "bench", "plan"):
        assert cmd in r.output


def test_plan_explains_qat_on_a_cpu_without_vnni(tiny_dir, tmp_path):
    from compressor.plan import make_plan
    from compressor.recipe import load_recipe

    path = write_recipe(
        tmp_path,
        f"""model: {{path: {tiny_dir / "bert"}}}
data: {{train: {tiny_dir / "sent.csv"}}}
stages:
  - finetune: {{max_steps: 5, qat: {{}}}}
  - quantize: {{type: qat}}
""",
    )
    rows = {a.stage: a for a in make_plan(load_recipe(path)[0], path.parent, AVX2)}
    assert "QAT" in rows["0 finetune"].why
    assert rows["1 quantize (qat)"].verdict == "faster + smaller" and "AVX2" in rows["1 quantize (qat)"].why
