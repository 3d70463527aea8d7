"""Quantization schemes, training callbacks and model extra state are registered by config type (issue 14); every
INT8 / INT4 artifact goes through the one ``finalize`` (LayerNorm rewrite -> parity -> provenance -> run context)."""

from __future__ import annotations

import contextlib
import json
import shutil
import typing
from types import SimpleNamespace

import pytest


def _quantize_configs() -> list[type]:
    from compressor.recipe.schema.quantize import QuantizeStage

    union = typing.get_args(QuantizeStage)[0]
    return list(typing.get_args(union))


def test_every_quantize_config_is_a_scheme_run_through_finalize():
    from compressor.core.registry import STAGES
    from compressor.pipeline.orchestrate import _register_stages
    from compressor.quantize.scheme import SCHEMES, run_scheme

    _register_stages()
    configs = _quantize_configs()
    assert len(configs) >= 7  # dynamic, static, qat, int4, int8_weight, awq, smoothquant
    for cfg_type in configs:
        assert cfg_type in SCHEMES, cfg_type
        handler = STAGES.get(cfg_type.model_construct())
        assert handler.func is run_scheme and handler.args == (SCHEMES.get(cfg_type.model_construct()),)


def test_a_scheme_registers_in_one_line_and_is_finalized(tmp_path, monkeypatch):
    """A new config type plus ``@register_scheme`` is a pipeline stage; running that stage runs the scheme, then
    finalize: provenance written, the artifact and record in the run context, ``after`` called with the result."""
    from compressor.core.registry import STAGES
    from compressor.quantize import scheme as S

    class Toy:
        pass

    dst = tmp_path / "onnx" / "model.int8.onnx"
    seen = []

    @S.register_scheme(Toy)
    def toy(ctx, cfg):
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_bytes(b"graph")
        return S.QuantizedGraph(
            dst,
            "int8",
            "toy INT8",
            {"scheme": "toy"},
            {"nodes": 3},
            summary="3 nodes",
            after=lambda ctx, result: seen.append(dict(result)),
        )

    checks = []
    monkeypatch.setattr(S, "parity_batches", lambda ctx: [{"input_ids": [[1, 2]]}])
    monkeypatch.setattr(
        S,
        "check_graph",
        lambda model, path, batches, tol, what, pad: (
            checks.append((model, path, what, pad)) or {"max_abs_diff": 0.25, "argmax_agreement": 1.0}
        ),
    )
    written = {}
    monkeypatch.setattr(S, "write_provenance", lambda path, record: written.update({path: record}))
    ctx = SimpleNamespace(
        model="the model",
        run_dir=tmp_path,
        tokenizer=SimpleNamespace(pad_token_id=7),
        recipe=SimpleNamespace(name="r", bench=SimpleNamespace(threads=1)),
        seed=3,
        artifacts={},
        provenance={},
    )
    try:
        assert S.SCHEMES.get(Toy()) is toy and STAGES.get(Toy()).args == (toy,)
        result = STAGES.get(Toy())(ctx, Toy())
    finally:
        S.SCHEMES._handlers.pop(Toy)
        STAGES._handlers.pop(Toy)
    assert checks == [("the model", dst, "toy INT8", 7)]
    assert result == {"artifact": "onnx/model.int8.onnx", "nodes": 3, "parity": {"max_abs_diff": 0.25, "argmax_agreement": 1.0}}
    assert seen == [result]
    record = written[dst]
    assert record["artifact"] == "int8" and record["scheme"] == "toy" and record["recipe"] == "r" and record["seed"] == 3
    assert "layernorm_kernels" not in record  # no LayerNorm setting named: no rewrite
    assert ctx.artifacts == {"int8": dst} and ctx.provenance["int8"] is record


def test_finish_file_rewrites_checks_and_records(tiny_bert_onnx, tiny_dir, tmp_path):
    """Dynamic INT8 of the tiny BERT through finish_file: LayerNorm split as asked, parity on real batches on the
    rewritten graph, a provenance record holding the scheme's details, the parity and the kernels."""
    from compressor.models import load_tokenizer
    from compressor.onnx.onnx import provenance_path
    from compressor.quantize.ptq import quantize_dynamic_file
    from compressor.quantize.scheme import QuantizedGraph, finish_file
    from compressor.recipe.schema import DynamicQuant

    src = tmp_path / "plain.onnx"
    shutil.copy(tiny_bert_onnx["plain"], src)
    dst = tmp_path / "model.int8.onnx"
    quantize_dynamic_file(src, dst, DynamicQuant())
    tok = load_tokenizer(tiny_dir / "bert")
    batches = [dict(tok(["a good film", "a bad and boring film that never ends"], padding=True, return_tensors="pt"))]
    q = QuantizedGraph(dst, "int8", "INT8", {"scheme": "dynamic"}, layernorm="split")
    record = finish_file(q, tiny_bert_onnx["model"], batches, extra={"recipe": "toy"})
    saved = json.loads(provenance_path(dst).read_text())
    assert saved["scheme"] == "dynamic" and saved["recipe"] == "toy" and saved["artifact"] == "int8"
    assert saved["layernorm_kernels"]["decision"] == "split (as asked)" and saved["layernorm_kernels"]["add_layernorm"] > 0
    assert record["parity"]["compared"] == 2 and saved["parity"]["max_abs_diff"] == pytest.approx(
        record["parity"]["max_abs_diff"]
    )
    assert record["parity"]["max_abs_diff"] < 0.5
    given = {"max_abs_diff": 0.5}
    q_none = QuantizedGraph(dst, "int8", "INT8", {}, parity=given)  # no rewrite: a check the scheme ran is kept
    assert finish_file(q_none, tiny_bert_onnx["model"], batches)["parity"] == given


def test_training_callbacks_by_config_type_in_field_order(monkeypatch):
    """training_callbacks builds one callback per set sub-config through TRAINING_CALLBACKS, in TrainConfig's field
    order (masks first, then QAT wraps the same weights), and refuses a set sub-config nobody registered."""
    from compressor.pipeline.orchestrate import _register_stages
    from compressor.recipe.schema import FinetuneStage, LoRAConfig, PartialConfig, QATConfig, UnstructuredPrune
    from compressor.train import callbacks as C

    _register_stages()
    for t in (UnstructuredPrune, QATConfig, LoRAConfig, PartialConfig):
        assert t in C.TRAINING_CALLBACKS, t
    fields = list(C.TrainConfig.model_fields)
    assert fields.index("prune") < fields.index("qat")
    calls = []
    fake = C.Registry("training callback")
    fake.register(UnstructuredPrune)(lambda ctx, tc, cfg, model, where: calls.append(("prune", where)) or "P")
    fake.register(QATConfig)(lambda ctx, tc, cfg, model, where: calls.append(("qat", where)) or "Q")
    monkeypatch.setattr(C, "TRAINING_CALLBACKS", fake)
    cfg = FinetuneStage(qat={}, prune={"sparsity": 0.5})
    assert C.training_callbacks(None, cfg, None, "stages.0.finetune") == ["P", "Q"]
    assert calls == [("prune", "stages.0.finetune.prune"), ("qat", "stages.0.finetune.qat")]
    with pytest.raises(KeyError, match="no handler for PartialConfig"):
        C.training_callbacks(None, FinetuneStage(partial={"last_layers": 1}), None, "stages.0.finetune")
    assert C.training_callbacks(None, FinetuneStage(), None, "x") == []


def test_model_state_providers_by_config_type(tmp_path, monkeypatch):
    """The pipeline saves and restores a model's extra state through MODEL_STATES, finding the config that made it
    from the stage contracts (a fact produced, not yet removed), and exports under every provider's ``plain``."""
    from compressor.pipeline.checkpoints import _track_facts
    from compressor.recipe.contracts import contract_of
    from compressor.recipe.schema import FinetuneStage, QATConfig, QATQuant
    from compressor.train import model_state as M

    events = []

    class Provider:
        @staticmethod
        def save(model, folder):
            events.append(("save", model, folder))

        @staticmethod
        def restore(model, folder, cfg):
            events.append(("restore", model, folder, cfg))

        @staticmethod
        @contextlib.contextmanager
        def plain(model):
            events.append(("plain on", model))
            yield
            events.append(("plain off", model))

    reg = M.Registry("model state")
    reg.register(QATConfig)(Provider)
    monkeypatch.setattr(M, "MODEL_STATES", reg)
    trained = FinetuneStage(qat={"observer": "ema"})
    live: dict = {}
    _track_facts(live, trained, contract_of(trained))
    assert list(live.values()) == [trained.qat]
    M.save_model_state("m", tmp_path)
    M.restore_model_state("m", tmp_path, list(live.values()))
    with M.plain_model("m"):
        events.append("export")
    assert events == [
        ("save", "m", tmp_path),
        ("restore", "m", tmp_path, trained.qat),
        ("plain on", "m"),
        "export",
        ("plain off", "m"),
    ]
    _track_facts(live, QATQuant(), contract_of(QATQuant()))  # exported as INT8: the model went back to plain layers
    assert live == {}


def test_qat_is_registered_for_training_snapshots_and_export():
    """QAT's pieces are registered by QATConfig: its training callback and its snapshot state."""
    import compressor.quantize.qat  # noqa: F401  (registers)
    from compressor.quantize.qat_callback import QATModelState, qat_callback
    from compressor.recipe.schema import QATConfig
    from compressor.train.callbacks import TRAINING_CALLBACKS
    from compressor.train.model_state import MODEL_STATES

    assert TRAINING_CALLBACKS.get(QATConfig()) is qat_callback and MODEL_STATES.get(QATConfig()) is QATModelState
