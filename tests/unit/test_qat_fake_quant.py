"""QAT building blocks on tiny models: fake-quant maths, observers, wrapping, state round trips, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compressor import testing as T
from compressor.core.errors import CompressorError
from compressor.quantize import qat as Q
from compressor.recipe.schema import QATConfig


class _State:  # the loop's TrainState, as far as the callback reads it
    def __init__(self, step: int = 0, total_steps: int = 10):
        self.step, self.total_steps = step, total_steps


def _bert(folder):
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(T.tiny_bert(folder)).eval()


def _batches(n: int = 2, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [
        {
            "input_ids": torch.randint(5, T.vocab_size(), (4, 12), generator=g),
            "attention_mask": torch.ones(4, 12, dtype=torch.long),
            "labels": torch.zeros(4, dtype=torch.long),
        }
        for _ in range(n)
    ]


def _logits(model, batch) -> torch.Tensor:
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def _quantized_weight(layer: Q.FakeQuantLinear, n_in: int) -> torch.Tensor:
    """The fake-quantized weight as (out, in), read back through forward with an identity input."""
    layer.fake_quant, layer.observing = True, False  # never observed: inputs pass unquantized
    with torch.no_grad():
        y = layer(torch.eye(n_in).unsqueeze(0))[0]
    return (y - (0 if layer.bias is None else layer.bias)).t()


@pytest.mark.parametrize("conv1d", [False, True])
def test_weight_fake_quant_is_per_channel_symmetric_int8(conv1d):
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(0)
    lin = nn.Linear(16, 6)
    with torch.no_grad():
        lin.weight.mul_(torch.tensor([0.01, 0.1, 1.0, 5.0, 0.5, 2.0]).unsqueeze(1))  # very different row ranges
    plain = lin
    if conv1d:  # GPT-2's layout: weight (in, out)
        plain = Conv1D(6, 16)
        with torch.no_grad():
            plain.weight.copy_(lin.weight.t())
            plain.bias.copy_(lin.bias)
    layer = Q.FakeQuantLinear(plain, QATConfig())
    w = lin.weight.detach()
    scale, zp = Q.weight_qparams(layer.weight_t(), 1)
    assert torch.allclose(scale, w.abs().amax(dim=1) / 127) and torch.equal(zp, torch.zeros(6, dtype=torch.int32))
    wq = _quantized_weight(layer, 16)
    levels = wq / scale.unsqueeze(1)
    assert torch.allclose(levels, levels.round(), atol=1e-3)  # on the grid of its own row's scale
    levels = levels.round()
    assert levels.abs().max() == 127 and levels.min() >= -127  # symmetric: -128 never used
    for c in range(6):
        assert len(levels[c].unique()) <= 255
        assert levels[c].abs().max() == 127  # every row uses its full range: per-channel, not per-tensor
    assert ((wq - w).abs() <= scale.unsqueeze(1) / 2 + 1e-6).all()


def test_observers_minmax_and_ema_ranges():
    xs = [torch.tensor([-1.0, 2.0]), torch.tensor([-3.0, 1.0]), torch.tensor([0.0, 5.0])]
    minmax = Q.FakeQuantLinear(nn.Linear(2, 2), QATConfig(observer="minmax"))
    ema = Q.FakeQuantLinear(nn.Linear(2, 2), QATConfig(observer="ema", ema_decay=0.5))
    for layer in (minmax, ema):
        layer.train()
        for x in xs:
            layer(x.view(1, 1, 2))
    assert (minmax.act_min.item(), minmax.act_max.item()) == (-3.0, 5.0)
    # EMA starts at the first batch: (-1, 2) -> (-2, 1.5) -> (-1, 3.25)
    assert ema.act_min.item() == pytest.approx(-1.0) and ema.act_max.item() == pytest.approx(3.25)
    # eval mode and a frozen observer leave the range alone
    minmax.eval()
    minmax(torch.tensor([[[-100.0, 100.0]]]))
    minmax.train()
    minmax.observing = False
    minmax(torch.tensor([[[-100.0, 100.0]]]))
    assert (minmax.act_min.item(), minmax.act_max.item()) == (-3.0, 5.0)
    scale, zp = Q.activation_qparams(minmax.act_min, minmax.act_max)
    assert scale.item() == pytest.approx(8 / 255) and zp.item() == round(3 / (8 / 255))
    scale, zp = Q.activation_qparams(torch.tensor(0.5), torch.tensor(2.0))  # the range always holds 0
    assert scale.item() == pytest.approx(2 / 255) and zp.item() == 0


def test_activation_fake_quant_is_per_tensor_uint8():
    layer = Q.FakeQuantLinear(nn.Linear(4, 3), QATConfig(observer="minmax"))
    layer.train()
    layer(torch.tensor([[[-1.0, 0.0, 2.0, 3.0]]]))
    layer.fake_quant, layer.observing = True, False
    x = torch.linspace(-2, 4, 64).view(16, 4).unsqueeze(0)
    scale, zp = Q.activation_qparams(layer.act_min, layer.act_max)
    xq = torch.fake_quantize_per_tensor_affine(x, scale, zp, 0, 255)
    wq = torch.fake_quantize_per_channel_affine(layer.weight_t(), *Q.weight_qparams(layer.weight_t(), 1), 1, -128, 127)
    with torch.no_grad():
        assert torch.allclose(layer(x), xq @ wq + layer.bias, atol=1e-6)
    # clipped to the observed range [-1, 3] (on the grid: zero point rounded, so within one step)
    assert xq.min() == pytest.approx(-zp.item() * scale.item()) and xq.max() == pytest.approx((255 - zp.item()) * scale.item())
    assert abs(xq.min() + 1.0) <= scale and abs(xq.max() - 3.0) <= scale
    assert len(((xq / scale) + zp).round().unique()) <= 256


def test_prepare_keeps_parameters_and_state_dict_keys(tmp_path):
    model = _bert(tmp_path / "m")
    params = dict(model.named_parameters())
    keys = list(model.state_dict())
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)  # created before wrapping: must still train them
    names = Q.prepare_qat(model, QATConfig(exclude=["classifier"]))
    assert len(names) == 2 * 6 + 1 and "classifier" not in names and Q.is_qat(model)
    assert all(isinstance(model.get_submodule(n), Q.FakeQuantLinear) for n in names)
    assert isinstance(model.classifier, nn.Linear)
    assert {n: id(p) for n, p in model.named_parameters()} == {n: id(p) for n, p in params.items()}
    assert list(model.state_dict()) == keys  # observer buffers are not persistent
    before = model.bert.encoder.layer[0].attention.self.query.weight.detach().clone()
    model.train()
    loss = model(**_batches(1)[0]).loss
    loss.backward()
    optimizer.step()
    assert not torch.equal(model.bert.encoder.layer[0].attention.self.query.weight, before)
    assert Q.prepare_qat(model, QATConfig(exclude=["classifier"])) == names  # idempotent


def test_fake_quant_disabled_is_exactly_fp32(tmp_path):
    model = _bert(tmp_path / "m")
    batch = _batches(1)[0]
    ref = _logits(model, batch)
    cb = Q.QATCallback(model, QATConfig(calibration_batches=2), _batches(2), "cpu")
    cb.on_train_begin(_State())
    model.eval()
    quantized = _logits(model, batch)
    with Q.fake_quant_disabled(model):
        assert torch.equal(_logits(model, batch), ref)
    assert torch.equal(_logits(model, batch), quantized)  # flags restored
    assert not torch.allclose(quantized, ref, atol=1e-6)  # quantization does change the output


def test_strip_round_trips_through_save_pretrained(tmp_path):
    from transformers import AutoModelForSequenceClassification

    model = _bert(tmp_path / "m")
    keys = list(model.state_dict())
    Q.QATCallback(model, QATConfig(calibration_batches=1), _batches(1), "cpu").on_train_begin(_State())
    weight = model.bert.encoder.layer[1].output.dense.weight
    stripped = Q.strip_qat(model)
    assert stripped is model and not Q.is_qat(model) and isinstance(model.bert.encoder.layer[1].output.dense, nn.Linear)
    assert model.bert.encoder.layer[1].output.dense.weight is weight and list(model.state_dict()) == keys
    model.save_pretrained(tmp_path / "saved")
    again = AutoModelForSequenceClassification.from_pretrained(tmp_path / "saved").eval()
    batch = _batches(1, seed=3)[0]
    assert torch.equal(_logits(again, batch), _logits(model.eval(), batch))


def test_qat_state_round_trip(tmp_path):
    from safetensors.torch import load_file, save_file

    cfg = QATConfig(calibration_batches=2, observer="minmax")
    a, b = _bert(tmp_path / "a"), _bert(tmp_path / "b")
    Q.QATCallback(a, cfg, _batches(2), "cpu").on_train_begin(_State())
    Q.prepare_qat(b, cfg)
    state = Q.qat_state(a)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    save_file(state, tmp_path / "qat.safetensors")  # plain tensors: a snapshot can go beside the weights
    Q.load_qat_state(b, load_file(tmp_path / "qat.safetensors"))
    batch = _batches(1, seed=5)[0]
    assert torch.equal(_logits(a.eval(), batch), _logits(b.eval(), batch))
    assert Q.activation_ranges(a) == Q.activation_ranges(b)
    with pytest.raises(CompressorError, match="does not match"):
        Q.load_qat_state(b, {k: v for k, v in state.items() if "layer.0" not in k})
    with pytest.raises(CompressorError, match="prepare_qat"):
        Q.load_qat_state(_bert(tmp_path / "c"), state)


def test_callback_freezes_logs_and_state_dict_round_trip(tmp_path):
    import io

    cfg = QATConfig(calibration_batches=2, freeze_after=0.5, observer="ema")
    a = _bert(tmp_path / "a")
    cb = Q.QATCallback(a, cfg, _batches(3), "cpu")
    assert len(cb.batches) == 2
    cb.on_train_begin(_State(0, 10))
    layers = [m for m in a.modules() if isinstance(m, Q.FakeQuantLinear)]
    assert all(m.fake_quant and m.observing and m.observed for m in layers)
    a.train()
    for step in range(1, 5):
        a(**_batches(1, seed=step)[0])
        cb.on_step(_State(step, 10))
    assert cb.logs() == {"qat_frozen": 0} and not cb.ready(_State(4, 10))
    cb.on_step(_State(5, 10))
    assert cb.logs() == {"qat_frozen": 1} and cb.ready(_State(5, 10)) and not any(m.observing for m in layers)
    frozen = Q.activation_ranges(a)
    a(**_batches(1, seed=9)[0])
    assert Q.activation_ranges(a) == frozen

    buf = io.BytesIO()
    torch.save(cb.state_dict(), buf)  # what accelerate does; it may load with weights_only=True
    buf.seek(0)
    b = _bert(tmp_path / "b")
    b.load_state_dict(a.state_dict())
    cb2 = Q.QATCallback(b, cfg, [], "cpu")
    cb2.load_state_dict(torch.load(buf, weights_only=True))
    cb2.on_train_begin(_State(6, 10))  # resuming: no calibration, ranges and flags as saved
    assert cb2.frozen and cb2.logs() == {"qat_frozen": 1} and Q.activation_ranges(b) == frozen
    assert not any(m.observing for m in b.modules() if isinstance(m, Q.FakeQuantLinear))
    batch = _batches(1, seed=11)[0]
    assert torch.equal(_logits(a.eval(), batch), _logits(b.eval(), batch))
    assert cb.summary()["layers"] == 14 and cb.summary()["ranges"]["observed_layers"] == 14


def test_no_eligible_module_is_a_clear_error(tmp_path):
    model = _bert(tmp_path / "m")
    with pytest.raises(CompressorError, match=r"no Linear layer matches include \['nothing_here'\]") as info:
        Q.prepare_qat(model, QATConfig(include=["nothing_here"]))
    assert "\n" not in str(info.value)
    with pytest.raises(CompressorError, match=r"exclude \['.\*'\]"):
        Q.QATCallback(model, QATConfig(exclude=[".*"]), _batches(1), "cpu")
    assert not Q.is_qat(model)
    with pytest.raises(CompressorError, match="no fake-quantized layers"):
        Q.export_qdq(model, _batches(1)[0], tmp_path / "x.onnx")


def test_calibration_needs_batches(tmp_path):
    cb = Q.QATCallback(_bert(tmp_path / "m"), QATConfig(), [], "cpu")
    with pytest.raises(CompressorError, match="no calibration batches"):
        cb.on_train_begin(_State())
