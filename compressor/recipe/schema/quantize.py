"""The ``quantize:`` stage: one config class per scheme, chosen by ``type:``."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Literal, Union

from pydantic import Field, ValidationInfo, field_validator

from compressor.recipe.schema.base import CAUSAL_LM, EXPORTED, FAKE_QUANT, SELECTION, Contract, Need, StageConfig


class GraphQuant(StageConfig):
    """A scheme that quantizes the exported ONNX graph: it needs an export stage before it."""

    def contract(self) -> Contract:
        kind = getattr(self, "type", "?")
        return Contract(
            needs=(Need(EXPORTED, True, f"quantize {{type: {kind}}} works on the ONNX model: put an 'export' stage before it"),)
        )


class DynamicQuant(GraphQuant):
    type: Literal["dynamic"] = "dynamic"
    per_channel: bool = Field(
        default=True,
        description="one weight scale per output column (quantize_dynamic's default "
        "is per-tensor): MiniLM SST-2 dev 89.45 -> 90.14 % at batch 1, same speed",
    )
    reduce_range: bool = False
    optimized: bool = Field(default=True, description="quantize the fused (optimized) graph when there is one")
    include_nodes: list[str] = Field(default_factory=list, description="only these graph nodes (default: all MatMuls)")
    exclude_nodes: list[str] = Field(default_factory=list)
    layernorm: Literal["auto", "split", "fused"] = Field(
        default="auto",
        description="residual Add + LayerNorm on CPU: 'split' writes Sum + LayerNormalization, which ONNX "
        "Runtime does not fuse into SkipLayerNormalization (6x slower on ORT 1.32 CPU); 'auto' times both here",
    )


class StaticQuant(GraphQuant):
    """Static INT8 (QDQ) with calibrated activation ranges; see compressor/quantize/static.py."""

    type: Literal["static"] = "static"
    method: Literal["minmax", "percentile", "entropy"] = "minmax"
    percentile: float = Field(default=99.99, gt=90, le=100, description="method: percentile only")
    calibration_samples: int = Field(default=256, ge=1, le=1_000_000)
    calibration_batch_size: int = Field(default=16, ge=1, le=4096)
    per_channel: bool = True
    reduce_range: bool = False
    activation_type: Literal["uint8", "int8"] = Field(default="uint8", description="uint8: the fast x86 kernels")
    weight_type: Literal["int8", "uint8"] = "int8"
    op_types: list[Literal["MatMul", "Gemm"]] = Field(default_factory=lambda: ["MatMul", "Gemm"], min_length=1)
    activation_matmuls: bool = Field(default=False, description="also MatMuls of two activations (attention scores)")
    quantize_embeddings: bool = Field(default=True, description="int8 embedding tables (Gather)")
    include_nodes: list[str] = Field(default_factory=list, description="only these graph nodes (default: every candidate)")
    exclude_nodes: list[str] = Field(default_factory=list)
    exclude_op_types: list[str] = Field(default_factory=list)
    optimized: bool = Field(
        default=True,
        description="quantize the ORT-fused graph when there is one (fused Attention gets "
        "dynamic QAttention); false: the plain export",
    )
    max_drop: float | None = Field(default=None, ge=0, description="accuracy points (perplexity for LMs) INT8 may lose")
    max_drop_relative: float | None = Field(default=None, ge=0, le=1, description="fraction of the fp32 metric")
    fallback_trials: int = Field(default=4, ge=0, le=64)
    layernorm: Literal["auto", "split", "fused"] = Field(
        default="auto",
        description="residual Add + LayerNorm on CPU: 'split' writes Sum + LayerNormalization, which ONNX "
        "Runtime does not fuse into SkipLayerNormalization (6x slower on ORT 1.32 CPU); 'auto' times both here",
    )

    # field validators (not one model validator) so that errors point at the offending key's line
    @field_validator("percentile")
    @classmethod
    def _percentile(cls, v: float, info: ValidationInfo) -> float:
        if info.data.get("method", "percentile") != "percentile":
            raise ValueError("percentile applies to method: percentile only")
        return v

    @field_validator("weight_type")
    @classmethod
    def _weight_type(cls, v: str, info: ValidationInfo) -> str:
        if v == "uint8" and info.data.get("activation_type") == "int8":
            raise ValueError("int8 activations need int8 weights (ONNX Runtime has no s8 x u8 kernel)")
        return v

    @field_validator("op_types", "include_nodes", "exclude_nodes", "exclude_op_types")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("lists a name twice")
        return v

    @field_validator("fallback_trials")
    @classmethod
    def _trials(cls, v: int, info: ValidationInfo) -> int:
        if info.data.get("max_drop") is None and info.data.get("max_drop_relative") is None:
            raise ValueError("fallback_trials needs max_drop or max_drop_relative")
        return v

    def contract(self) -> Contract:
        # an accuracy budget chooses among trials on the held-out validation split (or dev / test)
        contract = super().contract()
        if self.max_drop is None and self.max_drop_relative is None:
            return contract
        field = "max_drop" if self.max_drop is not None else "max_drop_relative"
        need = Need(SELECTION, True, "the accuracy budget needs a dev or test split", (field,))
        return replace(contract, needs=contract.needs + (need,), selects=True)


class QATQuant(StageConfig):
    """Export the model trained with ``qat:`` (in finetune / distill) as an ONNX QDQ graph with INT8 weights."""

    type: Literal["qat"] = "qat"
    opset: int = Field(default=17, ge=13, le=23, description="QDQ per-channel weights need opset >= 13")
    tolerance: float = Field(default=0.05, gt=0, le=100, description="largest |ONNX − fake-quant PyTorch| logit difference")
    quantize_embeddings: bool = Field(default=True, description="int8 embedding tables (weight-only, dequantized rows)")
    layernorm: Literal["auto", "split", "fused"] = Field(
        default="auto",
        description="residual Add + LayerNorm on CPU: 'split' writes Sum + LayerNormalization, which ONNX "
        "Runtime does not fuse into SkipLayerNormalization (6x slower on ORT 1.32 CPU); 'auto' times both here",
    )

    def contract(self) -> Contract:
        return Contract(
            needs=(
                Need(
                    FAKE_QUANT,
                    True,
                    "quantize {type: qat} exports a model trained with fake "
                    "quantization: add `qat: {}` to a finetune or distill stage before it",
                ),
            ),
            removes=(FAKE_QUANT,),
        )


class WeightOnlyQuant(GraphQuant):
    """Weight-only quantization of the exported graph's MatMuls (ONNX Runtime MatMulNBits, round to nearest); see
    compressor/quantize/weight_only.py."""

    block_size: Literal[16, 32, 64, 128, 256] = Field(
        default=32, description="input rows sharing one scale; must divide every quantized layer's input width"
    )
    symmetric: bool = Field(default=True, description="false: a zero point per block as well")
    include_lm_head: bool = Field(
        default=False,
        description="also quantize the output projection (the MatMul that "
        "yields logits): smaller and faster, usually a larger perplexity cost",
    )
    include_embeddings: bool = Field(
        default=False,
        description="also store the token embedding table in 4 bits "
        "(GatherBlockQuantized; INT4 only): smaller, as onnxruntime-genai's builder does",
    )
    accuracy_level: Literal[0, 1, 2, 3, 4] | None = Field(
        default=4,
        description="MatMulNBits compute type on CPU: 4 = int8 activations per block (the fast kernel, as "
        "onnxruntime-genai's builder uses), 0 / None = fp32",
    )


class Int4Quant(WeightOnlyQuant):
    type: Literal["int4"] = "int4"


class Int8WeightQuant(WeightOnlyQuant):
    type: Literal["int8_weight"] = "int8_weight"

    @field_validator("include_embeddings")
    @classmethod
    def _four_bit_tables(cls, v: bool) -> bool:
        if v:
            raise ValueError(
                "ONNX Runtime's GatherBlockQuantized takes 4-bit tables only; int8_weight keeps the embeddings in fp32"
            )
        return v


class AwqQuant(WeightOnlyQuant):
    """Activation-aware INT4 (AWQ): per-channel scales and clipping searched on calibration blocks, then MatMulNBits;
    writes model.int4.onnx; see compressor/quantize/awq.py."""

    type: Literal["awq"] = "awq"
    calibration_samples: int = Field(
        default=32, ge=1, le=100_000, description="training blocks run to observe activations (data.calibration when set)"
    )
    grid: int = Field(default=20, ge=2, le=200, description="points of the scale (α in [0, 1]) and clip searches")
    clip: bool = Field(default=True, description="also search each block's clipping range")

    def contract(self) -> Contract:
        return Contract(
            needs=GraphQuant.contract(self).needs
            + (Need(CAUSAL_LM, True, "quantize {type: awq} calibrates a decoder: it needs model.task: causal-lm"),)
        )


class SmoothQuantQuant(GraphQuant):
    """W8A8: SmoothQuant's exact scale migration, then INT8 weights and activations; writes model.int8.onnx; see
    compressor/quantize/smoothquant.py."""

    type: Literal["smoothquant"] = "smoothquant"
    alpha: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="migration strength: 0 keeps activations as they are, 1 moves all of their range into the weights",
    )
    activations: Literal["dynamic", "static"] = Field(
        default="dynamic", description="dynamic: ranges per call; static: ranges calibrated on the same blocks (QDQ)"
    )
    calibration_samples: int = Field(default=32, ge=1, le=100_000)
    include_lm_head: bool = Field(default=False, description="also quantize the output projection")

    def contract(self) -> Contract:
        return Contract(
            needs=GraphQuant.contract(self).needs
            + (
                Need(
                    CAUSAL_LM,
                    True,
                    "quantize {type: smoothquant} migrates a decoder's activation outliers: it needs model.task: causal-lm",
                ),
            )
        )


QuantizeStage = Annotated[
    Union[DynamicQuant, StaticQuant, QATQuant, Int4Quant, Int8WeightQuant, AwqQuant, SmoothQuantQuant],
    Field(discriminator="type"),
]
