"""QAT on tiny models: a few training steps with the callback, the QDQ export, what ONNX Runtime runs, end to end."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from compressor import testing as T
from compressor.quantize import qat as Q
from compressor.recipe.schema import QATConfig, TrainConfig
from tests.conftest import write_recipe

# ONNX (int8 weights, uint8 embeddings) vs the fake-quant PyTorch model it came from: only the embedding tables
# differ (PyTorch trains them in fp32); measured ~1e-2 on these models. With fp32 embeddings the two are the same
# computation (measured < 1e-6).
LOGIT_TOL, LOGIT_TOL_NO_EMBEDDINGS = 0.05, 1e-4
# per layer q k v o + FFN (2, or 3 for Llama; GPT-2: fused c_attn, c_proj, c_fc, c_proj), pooler + classifier / lm_head
N_LINEAR = {"bert": 2 * 6 + 2, "llama": 2 * 7 + 1, "gpt2": 2 * 4 + 1}


def _data(kind: str, tok, n: int = 48) -> list[dict]:
    rng = random.Random(0)
    if kind == "bert":
        texts = [T.sentiment_sentence(rng, i % 2) for i in range(n)]
        enc = tok(texts, padding="max_length", truncation=True, max_length=16, return_tensors="pt")
        enc["labels"] = torch.tensor([i % 2 for i in range(n)])
    else:
        phrases = ["the movie was very good .", "the plot is quite dull .", "we saw the film and it was great ."]
        enc = tok(
            [rng.choice(phrases) for _ in range(n)], padding="max_length", truncation=True, max_length=12, return_tensors="pt"
        )
        enc.pop("token_type_ids", None)
        enc["labels"] = enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)
    return [{k: v[i] for k, v in enc.items()} for i in range(n)]


def _train(kind: str, tiny_dir: Path, qat: QATConfig, steps: int = 8, callbacks=(), **kw):
    """``kind`` fine-tuned with QAT through the real training loop: (model, QAT callback, state, items)."""
    from torch.utils.data import DataLoader
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    from compressor.train.finetune import task_loss
    from compressor.train.loop import train

    auto = AutoModelForSequenceClassification if kind == "bert" else AutoModelForCausalLM
    model, tok = auto.from_pretrained(tiny_dir / kind), AutoTokenizer.from_pretrained(tiny_dir / kind)
    items = _data(kind, tok)
    # a seeded generator, as compressor.data.make_loader gives: shuffling then draws nothing from the global RNG
    # (which dropout uses), so a resumed run continues bit for bit
    loader = DataLoader(items, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(0))
    cb = Q.QATCallback(model, qat, [next(iter(DataLoader(items, batch_size=8)))], "cpu")
    cfg = TrainConfig(max_steps=steps, batch_size=8, lr=2e-3, warmup_ratio=0.0, mixed_precision="no", checkpoint_every=2)
    state = train(model, loader, cfg, task_loss, name=f"qat-{kind}", device="cpu", callbacks=[cb, *callbacks], **kw)
    return state.model.eval(), cb, state, items


@pytest.fixture(scope="module", params=["bert", "llama", "gpt2"])
def trained(request, tiny_dir, tmp_path_factory):
    """A tiny model QAT-trained for 8 steps through the real loop, and its QDQ export."""
    from torch.utils.data import DataLoader

    kind = request.param
    model, cb, state, items = _train(kind, tiny_dir, QATConfig(calibration_batches=1, freeze_after=0.5, observer="ema"))
    batch = {k: v for k, v in next(iter(DataLoader(items[:6], batch_size=6))).items() if k != "labels"}
    d = tmp_path_factory.mktemp(f"qat-{kind}")
    info = Q.export_qdq(model, batch, d / "model.int8.onnx")
    return {"kind": kind, "model": model, "cb": cb, "state": state, "batch": batch, "dir": d, "info": info}


def _producers(graph) -> dict:
    return {o: n for n in graph.node for o in n.output}


def _const(graph, name: str) -> np.ndarray:
    """An initializer's or a Constant node's value (the exporter emits scales and zero points as Constants)."""
    for i in graph.initializer:
        if i.name == name:
            return onnx.numpy_helper.to_array(i)
    node = next(n for n in graph.node if n.op_type == "Constant" and n.output[0] == name)
    return onnx.numpy_helper.to_array(node.attribute[0].t)


def test_training_ran_with_fake_quant_and_froze(trained):
    state, cb = trained["state"], trained["cb"]
    assert state.step == 8 and cb.frozen and cb.frozen_at == 4
    frozen = [rec.get("qat_frozen") for rec in state.history if "loss" in rec]
    assert frozen and frozen[-1] == 1
    layers = [m for m in trained["model"].modules() if isinstance(m, Q.FakeQuantLinear)]
    assert len(layers) == N_LINEAR[trained["kind"]] and all(m.fake_quant and m.observed and not m.observing for m in layers)


def test_graph_has_qdq_feeding_every_quantized_matmul(trained):
    g = onnx.load(str(trained["dir"] / "model.int8.onnx")).graph
    prod = _producers(g)
    inits = {i.name: i for i in g.initializer}
    quantized = 0
    for n in g.node:
        if n.op_type != "MatMul":
            continue
        a, b = (prod.get(x) for x in n.input[:2])
        if b is None or b.op_type != "DequantizeLinear":
            assert n.input[1] not in inits, n.name  # no fp32 weight left: only activation x activation MatMuls
            continue
        # weight: int8 initializer -> DequantizeLinear (per channel, axis 1) -> MatMul, no Transpose between
        w = inits[b.input[0]]
        assert w.data_type == onnx.TensorProto.INT8 and len(w.dims) == 2, n.name
        assert next(x.i for x in b.attribute if x.name == "axis") == 1 and _const(g, b.input[1]).shape == (w.dims[1],)
        assert not np.any(_const(g, b.input[2]))  # zero points 0: symmetric
        # activation: QuantizeLinear (uint8) -> DequantizeLinear -> MatMul
        assert a is not None and a.op_type == "DequantizeLinear" and prod[a.input[0]].op_type == "QuantizeLinear", n.name
        assert _const(g, a.input[2]).dtype == np.uint8 and _const(g, a.input[1]).shape == ()  # per tensor
        quantized += 1
    info = trained["info"]
    assert quantized == N_LINEAR[trained["kind"]] == info["quantized_linears"] == info["quantized_matmuls"]
    assert info["folded_weights"] == quantized and info["weight_only_matmuls"] == 0
    assert info["weight_bytes_fp32"] == 4 * info["weight_bytes_int8"]
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] in inits for n in g.node)  # all weights folded
    # embedding tables: uint8 behind DequantizeLinear, read by Gather
    assert info["embeddings_quantized"]
    for name in info["embeddings_quantized"]:
        assert inits[f"{name}.uint8"].data_type == onnx.TensorProto.UINT8 and name not in inits


def test_ort_runs_integer_kernels(trained, tmp_path):
    import onnxruntime as ort

    path = trained["dir"] / "model.int8.onnx"
    kernels = Q.ort_kernels(path)
    n = N_LINEAR[trained["kind"]]
    assert kernels.get("MatMulIntegerToFloat", 0) == n, kernels  # every quantized layer runs an integer MatMul
    assert "DequantizeLinear" not in kernels or kernels["DequantizeLinear"] <= kernels.get("Gather", 0), kernels
    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "ort.onnx")
    opts.log_severity_level = 3
    ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    g = onnx.load(str(tmp_path / "ort.onnx")).graph
    inits = {i.name: i.data_type for i in g.initializer}
    gathers = [n for n in g.node if n.op_type == "Gather" and n.input[0] in inits]
    # ORT dropped the DQ / Q pair around each embedding Gather: it gathers uint8 rows and dequantizes only those
    assert len(gathers) == len(trained["info"]["embeddings_quantized"])
    assert all(inits[n.input[0]] == onnx.TensorProto.UINT8 for n in gathers)


def test_onnx_matches_fake_quant_pytorch_not_fp32(trained):
    from compressor.measure.evaluate import onnx_logits
    from compressor.onnx.onnx import parity
    from compressor.onnx.session import make_session

    model, batch, d = trained["model"], trained["batch"], trained["dir"]
    check = parity(model, d / "model.int8.onnx", [batch], LOGIT_TOL, what="QAT INT8")
    assert check["argmax_agreement"] >= 0.9, check
    got = onnx_logits(make_session(d / "model.int8.onnx"), batch)
    with Q.fake_quant_disabled(model):
        fp32 = model(**batch).logits.detach().numpy()
    assert np.abs(got - fp32).max() > 1e-3  # quantization happened
    # without the embedding tables the ONNX graph computes exactly what the fake-quant model does
    info = Q.export_qdq(model, batch, d / "no-emb.onnx", quantize_embeddings=False)
    assert info["embeddings_quantized"] == [] and info["quantized_matmuls"] == N_LINEAR[trained["kind"]]
    exact = parity(model, d / "no-emb.onnx", [batch], LOGIT_TOL_NO_EMBEDDINGS, what="QAT INT8")
    print(
        f"{trained['kind']}: max |ONNX - fake-quant| {check['max_abs_diff']:.2e} (uint8 embeddings), "
        f"{exact['max_abs_diff']:.2e} (fp32 embeddings); vs fp32 model {np.abs(got - fp32).max():.2e}"
    )


def _tensor_bytes(path: Path) -> int:
    g = onnx.load(str(path)).graph
    tensors = list(g.initializer) + [n.attribute[0].t for n in g.node if n.op_type == "Constant" and n.attribute[0].t.dims]
    return sum(onnx.numpy_helper.to_array(t).nbytes for t in tensors)


def test_export_stores_weights_about_4x_smaller_than_fp32(trained):
    from compressor.onnx.onnx import export_model

    model, d = trained["model"], trained["dir"]
    with Q.fake_quant_disabled(model):
        export_model(model, trained["batch"], d / "fp32.onnx")
    ops = Counter(n.op_type for n in onnx.load(str(d / "fp32.onnx")).graph.node)
    assert ops["QuantizeLinear"] == 0  # fake quant off: the plain fp32 graph
    fp32, int8 = _tensor_bytes(d / "fp32.onnx"), _tensor_bytes(d / "model.int8.onnx")
    print(
        f"{trained['kind']}: tensors {fp32} -> {int8} bytes; files {(d / 'fp32.onnx').stat().st_size} -> "
        f"{(d / 'model.int8.onnx').stat().st_size} bytes; MatMul weights {trained['info']['weight_bytes_fp32']} -> "
        f"{trained['info']['weight_bytes_int8']} bytes"
    )
    # weights and tables at 1 byte instead of 4; biases, norms and scales (large in a 32-wide model) stay fp32
    assert int8 < 0.35 * fp32, (fp32, int8)


def test_interrupted_training_resumes_identically(tiny_dir, tmp_path):
    """Ctrl-C at step 5 (ranges still moving: freeze at 6), resume from the checkpoint: same weights and ranges."""
    from compressor.train.loop import Interrupted

    class StopAt:
        def on_step(self, state):
            if state.step == 5:
                raise KeyboardInterrupt

    qat = QATConfig(calibration_batches=1, freeze_after=0.75, observer="ema", ema_decay=0.5)
    ref, ref_cb, _, _ = _train("bert", tiny_dir, qat)
    with pytest.raises(Interrupted):
        _train("bert", tiny_dir, qat, callbacks=[StopAt()], checkpoint_dir=tmp_path / "ckpt")
    got, got_cb, state, _ = _train("bert", tiny_dir, qat, checkpoint_dir=tmp_path / "ckpt", resume=True)
    assert state.step == 8 and got_cb.calibrated_on == 1 and got_cb.frozen_at == ref_cb.frozen_at == 6
    ra, rb = Q.activation_ranges(ref), Q.activation_ranges(got)
    assert ra.keys() == rb.keys() and max(abs(a - b) for k in ra for a, b in zip(ra[k], rb[k])) < 1e-6
    wa, wb = ref.state_dict(), got.state_dict()
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-6


# ------------------------------------------------------------------ through the pipeline
@pytest.fixture(scope="module")
def qat_run(tiny_dir, tmp_path_factory) -> Path:
    from compressor.pipeline.orchestrate import run

    d = tmp_path_factory.mktemp("qat-run")
    recipe = write_recipe(
        d,
        f"""
name: qat
model: {{path: {tiny_dir / "bert"}}}
data: {{train: {tiny_dir / "sent.csv"}, split: {{dev: 0.2, test: 0.1}}, max_length: 32}}
stages:
  - finetune: {{epochs: 4, lr: 3.0e-3, batch_size: 16, qat: {{calibration_batches: 2}}}}
  - export: {{}}
  - quantize: {{type: qat}}
evaluate: {{splits: [dev], artifacts: [torch, onnx, int8]}}
bench: {{enabled: false}}
output: {{dir: {d / "runs"}, keep_checkpoints: true}}
""",
    )
    return run(recipe, quiet=True)  # keep_checkpoints: a resume test copies this run as if it had been killed


def test_recipe_finetune_qat_export_quantize(qat_run):
    from transformers import AutoModelForSequenceClassification

    prov = json.loads((qat_run / "onnx" / "model.int8.onnx.json").read_text())
    assert (qat_run / "onnx" / "model.int8.onnx").is_file()
    assert prov["scheme"] == "qat" and prov["artifact"] == "int8" and prov["observer"] == "ema" and prov["versions"]["onnx"]
    assert prov["quantized_matmuls"] == N_LINEAR["bert"] and prov["parity"]["max_abs_diff"] <= 0.05
    assert prov["ort_integer_kernels"]["MatMulIntegerToFloat"] == N_LINEAR["bert"]
    assert not Q.is_qat(AutoModelForSequenceClassification.from_pretrained(qat_run / "model"))  # a plain checkpoint
    m = json.loads((qat_run / "metrics.json").read_text())
    acc = {k: v["metrics"]["dev"]["accuracy"] for k, v in m["artifacts"].items() if v.get("metrics")}
    print("dev accuracy", acc)
    assert acc["int8"] >= 0.85 and acc["int8"] >= acc["pytorch"] - 0.05, acc
    stage = m["stages"][-1]
    assert stage["scheme"] == "qat" and stage["artifact"] == "onnx/model.int8.onnx" and stage["quantized_linears"] == 14
    assert m["stages"][0]["qat"]["layers"] == N_LINEAR["bert"]


def test_recipe_fp32_export_is_plain(qat_run):
    g = onnx.load(str(qat_run / "onnx" / "model.onnx")).graph
    assert not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in g.node)


def test_qat_quantize_without_qat_training_is_an_error(tiny_dir, tmp_path):
    """A model that was not trained with qat: the stage refuses with one clear line."""
    from compressor.core.errors import CompressorError
    from compressor.pipeline.context import RunContext
    from compressor.recipe.schema import QATQuant

    ctx = RunContext(recipe=None, recipe_dir=tmp_path, run_dir=tmp_path)
    from transformers import AutoModelForSequenceClassification

    ctx.model = AutoModelForSequenceClassification.from_pretrained(tiny_dir / "bert")
    with pytest.raises(CompressorError, match=r"add `qat: \{\}` to a finetune or distill stage"):
        Q.run_qat_export(ctx, QATQuant())
    assert not (Path(tmp_path) / "onnx").exists()


def test_resume_after_qat_training_restores_the_observer_ranges(qat_run, tmp_path):
    """Killed after the QAT finetune stage: --resume reloads the snapshot, re-wraps it, reloads the ranges, exports."""
    import shutil

    from compressor.pipeline.orchestrate import run

    run_dir = tmp_path / "qat"
    shutil.copytree(qat_run, run_dir)
    for stage in ("stage-1-export", "stage-2-quantize"):  # as if the process died after stage 0
        shutil.rmtree(run_dir / "checkpoints" / stage)
    for f in ("metrics.json", "onnx/model.int8.onnx", "onnx/model.int8.onnx.json"):
        (run_dir / f).unlink()
    (run_dir / "status").write_text("running\n")
    run(resume=run_dir, quiet=True)
    log = (run_dir / "log.txt").read_text()
    assert "stage 0 (finetune): already complete, skipped" in log
    got = json.loads((run_dir / "onnx" / "model.int8.onnx.json").read_text())
    ref = json.loads((qat_run / "onnx" / "model.int8.onnx.json").read_text())
    assert got["parity"]["max_abs_diff"] <= 0.05
    a = json.loads((qat_run / "metrics.json").read_text())["artifacts"]["int8"]["metrics"]["dev"]["accuracy"]
    b = json.loads((run_dir / "metrics.json").read_text())["artifacts"]["int8"]["metrics"]["dev"]["accuracy"]
    assert b == pytest.approx(a, abs=1e-9) and got["quantized_matmuls"] == ref["quantized_matmuls"]


def test_qat_training_without_a_qat_export_is_a_recipe_error(tiny_dir, tmp_path):
    from compressor.core.errors import RecipeError
    from compressor.recipe import load_recipe

    recipe = write_recipe(
        tmp_path,
        f"""model: {{path: {tiny_dir / "bert"}}}
data: {{train: {tiny_dir / "sent.csv"}}}
stages:
  - finetune:
      max_steps: 5
      qat: {{}}
  - export: {{}}
""",
    )
    with pytest.raises(RecipeError, match=r"recipe.yaml:6: stages.0.finetune.qat: .*add one"):
        load_recipe(recipe)
