"""The recipe format. Every model rejects unknown keys; stages are single-key mappings.

    stages:
      - finetune: {epochs: 3, lr: 5.0e-5}
      - export: {}
      - quantize: {type: dynamic}
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Union

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from compressor.core.pkgpath import PREFIX, split_pkg

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
BIG = 1_000_000_000  # upper bound of step / sample / count settings (a 5000-digit integer is a typo, not a request)


def _path(v: str) -> str:
    """A path a recipe names: not blank, no NUL, and a pkg:// path that stays inside its package."""
    if not v.strip():
        raise ValueError("empty path: name a file or folder")
    if "\x00" in v:
        raise ValueError("the path holds a NUL character")
    if v.startswith(PREFIX):
        split_pkg(v)
    return v


PathStr = Annotated[str, AfterValidator(_path)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# ---------------------------------------------------------------- model / data
class ModelConfig(Strict):
    path: PathStr = Field(description="local directory, pkg://<package>/<path>, or a Hub id")
    task: Literal["sequence-classification", "causal-lm"] = "sequence-classification"
    num_labels: int | None = Field(default=None, ge=1, le=100_000)
    trust_remote_code: bool = False
    revision: str | None = None


class SplitConfig(Strict):
    """How to cut dev/test out of a single file (deterministic, stratified)."""

    dev: float = Field(default=0.1, ge=0.0, lt=1.0)
    test: float = Field(default=0.0, ge=0.0, lt=1.0)
    stratify: bool = True
    dedupe: bool = True
    conflicts: Literal["keep-first", "majority", "drop"] = Field(
        default="keep-first", description="a text seen more than once with different labels: keep the first occurrence's "
        "label, the most common label, or drop the text (with dedupe)")
    validation: float = Field(default=0.1, ge=0.0, lt=1.0,
                              description="share of the training rows held out (stratified) to choose the best checkpoint "
                                          "and INT8 budget trials; taken from rows max_train_samples leaves unused when "
                                          "there are enough. dev / test are then only evaluated")
    validation_max: int = Field(default=2000, ge=1, description="at most this many validation rows (evaluated at every "
                                                                 "eval_every: a large one slows training)")
    select_on: Literal["validation", "dev"] = Field(
        default="validation", description="dev: choose checkpoints on the dev split instead (the report then says that "
                                          "its dev figure is the selection metric)")

    @model_validator(mode="after")
    def _sum(self) -> SplitConfig:
        if self.dev + self.test >= 1.0:
            raise ValueError("dev + test must be < 1")
        if self.select_on == "validation" and self.validation == 0:
            raise ValueError("validation is 0 but select_on is validation: give validation a share (e.g. 0.1) "
                             "or set select_on: dev")
        return self


class DataConfig(Strict):
    train: PathStr = Field(description="csv / tsv / jsonl / parquet / txt file, or pkg://…")
    dev: PathStr | None = None
    test: PathStr | None = None
    calibration: PathStr | None = None
    format: Literal["auto", "csv", "tsv", "jsonl", "parquet", "text"] = "auto"
    encoding: str = "utf-8"
    quoting: Literal["auto", "csv", "none"] = Field(
        default="auto", description="csv / tsv quoting: csv honours \"...\" fields (separators, doubled quotes, newlines "
        "inside); none reads quotes literally; auto: csv for .csv, and for .tsv when the file parses cleanly that way")
    text: str | list[str] = "text"
    label: str | None = "label"
    labels: list[str] | None = Field(default=None, description="label names in id order")
    split: SplitConfig = Field(default_factory=SplitConfig)
    max_length: int = Field(default=128, ge=8, le=32768)
    max_train_samples: int | None = Field(default=None, ge=1, le=BIG)
    max_eval_samples: int | None = Field(default=None, ge=1, le=BIG)

    @field_validator("text")
    @classmethod
    def _text(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and not 1 <= len(v) <= 2:
            raise ValueError("give one text column, or two for sentence pairs")
        return v

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError("label names must be unique")
        return v


# ---------------------------------------------------------------- pruning / QAT (inside training or as stages)
# Linear layers whose names match one of these (re.search) are never pruned (unstructured) unless the
# recipe's ``exclude`` says otherwise: embeddings, task heads (BERT's pooler is part of the classification
# head: its weights are ~10x smaller than the encoder's, so a global magnitude ranking zeroes all of it and the
# classifier sees a constant) and norms (norms are not Linear anyway).
DEFAULT_EXCLUDE = ["embed", "classifier", "score", "lm_head", "pooler", "norm"]


def _patterns(v: list[str]) -> list[str]:
    import re

    for p in v:
        try:
            re.compile(p)
        except re.error as e:
            raise ValueError(f"{p!r} is not a valid regular expression: {e}") from None
    if len(set(v)) != len(v):
        raise ValueError("lists a pattern twice")
    return v


class MagnitudeCriterion(Strict):
    """|w| (unstructured), or the L1 / L2 norm of a head's / neuron's weights (structured)."""

    type: Literal["magnitude"] = "magnitude"
    norm: Literal["l1", "l2"] = "l1"


class TaylorCriterion(Strict):
    """First-order Taylor importance |w · dL/dw| (structured: |dL/dmask| of a head / neuron mask)."""

    type: Literal["taylor"] = "taylor"
    batches: int = Field(default=32, ge=1, le=100_000, description="one-shot: training batches observed")


class MovementCriterion(Strict):
    """Movement pruning: −w · dL/dw accumulated over fine-tuning steps (inside finetune / distill only)."""

    type: Literal["movement"] = "movement"


Criterion = Annotated[Union[MagnitudeCriterion, TaylorCriterion, MovementCriterion], Field(discriminator="type")]


class ScheduleConfig(Strict):
    """When sparsity rises: one_shot (all at ``start``), linear, or cubic (Zhu & Gupta 2017)."""

    type: Literal["one_shot", "linear", "cubic"] = "cubic"
    start: int = Field(default=0, ge=0, le=BIG, description="optimizer step of the first pruning update")
    end: int | None = Field(default=None, ge=1, le=BIG, description="step the final sparsity is reached; default 70 % of training")
    every: int = Field(default=50, ge=1, le=1_000_000, description="steps between pruning updates")
    initial: float = Field(default=0.0, ge=0.0, lt=1.0, description="sparsity at the first update")

    @field_validator("end")
    @classmethod
    def _end(cls, v: int | None, info: ValidationInfo) -> int | None:
        if v is not None and v <= info.data.get("start", 0):
            raise ValueError("end must be after start")
        return v


class UnstructuredPrune(Strict):
    """Zero individual weights of Linear layers; masks held after every optimizer step, folded in at the end."""

    type: Literal["unstructured"] = "unstructured"
    sparsity: float = Field(ge=0.0, lt=1.0, description="final fraction of zeros in the pruned layers")
    criterion: Criterion = Field(default_factory=MagnitudeCriterion)
    scope: Literal["global", "layer"] = Field(default="global", description="one threshold for all layers, or per layer")
    include: list[str] = Field(default_factory=lambda: [".*"], min_length=1, description="regexes over module names")
    exclude: list[str] = Field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)

    _include = field_validator("include", "exclude")(classmethod(lambda cls, v: _patterns(v)))

    @field_validator("schedule")
    @classmethod
    def _initial(cls, v: ScheduleConfig, info: ValidationInfo) -> ScheduleConfig:
        final = info.data.get("sparsity")
        if final is not None and v.initial > final:
            raise ValueError(f"initial sparsity {v.initial} is above the final sparsity {final}")
        return v


class StructuredPrune(Strict):
    """Remove whole attention heads and FFN neurons: the Linear layers are sliced and the config rewritten.

    ``heads`` / ``ffn``: an integer is a count removed from every layer; a number below 1 (0.5) a fraction.
    """

    type: Literal["structured"] = "structured"
    heads: Annotated[int, Field(ge=0)] | Annotated[float, Field(ge=0.0, lt=1.0)] = 0
    ffn: Annotated[int, Field(ge=0)] | Annotated[float, Field(ge=0.0, lt=1.0)] = 0
    criterion: Criterion = Field(default_factory=TaylorCriterion)
    round_to: int = Field(default=8, ge=1, le=4096, description="kept FFN neurons: a multiple of this (fast kernels)")

    @model_validator(mode="after")
    def _something(self) -> StructuredPrune:
        if not self.heads and not self.ffn:
            raise ValueError("say what to remove: heads and / or ffn")
        if self.criterion.type == "movement":
            raise ValueError("criterion movement needs training; structured pruning uses magnitude or taylor")
        return self


class VocabularyPrune(Strict):
    """Keep only the tokens the training data uses (plus special tokens): smaller embedding table and tokenizer."""

    type: Literal["vocabulary"] = "vocabulary"
    min_count: int = Field(default=1, ge=1, le=BIG, description="a token must occur this often in the training texts")
    keep_single_chars: bool = Field(default=True, description="also keep one-character tokens, so unseen words still split")
    extra_texts: list[PathStr] = Field(
        default_factory=list, description="unlabelled text files (one text per line) whose tokens are kept too, e.g. "
        "general English, so that words a small training split lacks keep their own embedding rows")


PruneStage = Annotated[Union[UnstructuredPrune, StructuredPrune, VocabularyPrune], Field(discriminator="type")]


class QATConfig(Strict):
    """Quantization-aware training: fake INT8 (per-channel symmetric weights, per-tensor asymmetric
    activations with observers) in the Linear layers while the stage trains; ``quantize: {type: qat}``
    then exports the ONNX QDQ graph."""

    observer: Literal["minmax", "ema"] = Field(default="ema", description="activation range: running min/max or EMA")
    ema_decay: float = Field(default=0.99, gt=0.0, lt=1.0)
    calibration_batches: int = Field(default=8, ge=1, le=100_000, description="batches observed before fake quant starts")
    freeze_after: float = Field(default=0.8, gt=0.0, le=1.0, description="fraction of training after which ranges freeze")
    include: list[str] = Field(default_factory=lambda: [".*"], min_length=1)
    exclude: list[str] = Field(default_factory=list)

    _include = field_validator("include", "exclude")(classmethod(lambda cls, v: _patterns(v)))


# ---------------------------------------------------------------- stages
class TrainConfig(Strict):
    epochs: float = Field(default=3.0, gt=0, le=1000)
    max_steps: int | None = Field(default=None, ge=1, le=BIG)
    lr: float = Field(default=5e-5, gt=0, lt=1)
    batch_size: int = Field(default=32, ge=1, le=65536)
    eval_batch_size: int = Field(default=64, ge=1, le=65536)
    grad_accum: int = Field(default=1, ge=1, le=4096)
    warmup_ratio: float = Field(default=0.1, ge=0, le=1)
    weight_decay: float = Field(default=0.01, ge=0, lt=1)
    max_grad_norm: float | None = Field(default=1.0, gt=0)
    eval_every: int | None = Field(default=None, ge=1, le=BIG, description="steps; default: once per epoch")
    early_stopping: int | None = Field(default=None, ge=1, le=BIG, description="evaluations without improvement")
    mixed_precision: Literal["no", "fp16", "bf16", "auto"] = "auto"
    checkpoint_every: int | None = Field(default=None, ge=1, le=BIG, description="steps between resumable checkpoints")
    prune: UnstructuredPrune | None = Field(default=None, description="gradual pruning during this stage's training")
    qat: QATConfig | None = Field(default=None, description="quantization-aware training during this stage")

    @field_validator("qat", mode="before")
    @classmethod
    def _qat_on(cls, v: Any) -> Any:
        return {} if v is True else (None if v is False else v)


class FinetuneStage(TrainConfig):
    pass


class StudentConfig(Strict):
    layers: list[int] | None = Field(default=None, description="teacher layers to keep, e.g. [0, 2, 4]")
    every: int | None = Field(default=None, ge=1, le=1000)
    path: PathStr | None = None
    num_hidden_layers: int | None = Field(default=None, ge=1, le=1000)
    hidden_size: int | None = Field(default=None, ge=1, le=1_000_000)
    intermediate_size: int | None = Field(default=None, ge=1, le=10_000_000)
    num_attention_heads: int | None = Field(default=None, ge=1, le=10_000)
    current: bool = Field(default=False, description="the model as the previous stages left it (e.g. pruned), "
                                                      "distilled from `teacher`; `student: current` for short")

    @model_validator(mode="after")
    def _one_way(self) -> StudentConfig:
        ways = [self.layers is not None, self.every is not None, self.path is not None, self.current]
        if sum(ways) > 1:
            raise ValueError("give one of layers, every, path or current")
        if self.current and any(
            v is not None for v in (self.num_hidden_layers, self.hidden_size, self.intermediate_size, self.num_attention_heads)
        ):
            raise ValueError("size overrides cannot be combined with current")
        if self.path is not None and any(
            v is not None for v in (self.num_hidden_layers, self.hidden_size, self.intermediate_size, self.num_attention_heads)
        ):
            raise ValueError("size overrides cannot be combined with path")
        if self.layers is not None:
            if not self.layers:
                raise ValueError("layers must not be empty")
            if any(i < 0 for i in self.layers):
                raise ValueError("layer indices must be >= 0")
            if any(i >= 100_000 for i in self.layers):
                raise ValueError("layer indices must be below 100000")
            if len(set(self.layers)) != len(self.layers):
                raise ValueError("layer indices must be unique")
        return self


class LogitLoss(Strict):
    type: Literal["logits"] = "logits"
    weight: float = Field(default=1.0, ge=0)
    temperature: float = Field(default=2.0, gt=0, le=1000)
    alpha: float = Field(default=0.5, ge=0, le=1, description="weight of the hard-label loss")


class HiddenLoss(Strict):
    type: Literal["hidden"] = "hidden"
    weight: float = Field(default=1.0, ge=0)
    layer_map: dict[int, int] | None = Field(default=None, description="student layer -> teacher layer")


class AttentionLoss(Strict):
    type: Literal["attention"] = "attention"
    weight: float = Field(default=1.0, ge=0)
    layer_map: dict[int, int] | None = None


DistillLoss = Annotated[Union[LogitLoss, HiddenLoss, AttentionLoss], Field(discriminator="type")]


class TransferData(Strict):
    """Unlabelled text the student also learns from, through the teacher's outputs alone (a knowledge-transfer set,
    as TinyBERT's augmented data): rows whose text is in the training (labelled), dev or test split are dropped."""

    path: PathStr = Field(description="csv / tsv / jsonl / parquet / txt file, or pkg://… (relative to the recipe)")
    text: str | list[str] = Field(default="text", description="text column(s); a .txt file gives one text per line")
    format: Literal["auto", "csv", "tsv", "jsonl", "parquet", "text"] = "auto"
    encoding: str = "utf-8"
    max_samples: int | None = Field(default=None, ge=1, le=BIG)


class DistillStage(TrainConfig):
    teacher: PathStr | None = Field(default=None, description="teacher model dir; default: the current model")
    student: StudentConfig = Field(default_factory=StudentConfig)
    losses: list[DistillLoss] = Field(default_factory=lambda: [LogitLoss()])
    cache_teacher_logits: bool = False
    transfer: TransferData | None = Field(default=None, description="classifiers: extra unlabelled text for distillation")

    @field_validator("transfer")
    @classmethod
    def _soft_targets(cls, v: TransferData | None, info: ValidationInfo) -> TransferData | None:
        losses = info.data.get("losses") or []
        if v is not None and not any(x.type != "logits" or x.alpha < 1 for x in losses):
            raise ValueError("transfer rows have no labels: add a soft-target loss (logits with alpha < 1) or a "
                             "hidden / attention loss")
        return v

    @field_validator("student", mode="before")
    @classmethod
    def _current(cls, v: Any) -> Any:
        return {"current": True} if v == "current" else v

    @field_validator("student")
    @classmethod
    def _needs_teacher(cls, v: StudentConfig, info: ValidationInfo) -> StudentConfig:
        if v.current and info.data.get("teacher") is None:
            raise ValueError("student: current needs a teacher path (the model to learn from, e.g. the one before pruning)")
        return v


class ExportStage(Strict):
    opset: int = Field(default=17, ge=11, le=23)
    tolerance: float = Field(default=1e-3, gt=0, le=10)
    exporter: Literal["auto", "torchscript", "dynamo"] = "auto"
    with_past: bool = Field(
        default=False, description="causal LMs: export with a key / value cache (position_ids, past_key_values.* in, "
        "present.* out; one graph for prefill and decode) plus genai_config.json and the tokenizer files")
    optimize: bool = Field(default=True, description="run ONNX Runtime's transformer optimizer")
    cls_only_last_layer: bool = Field(
        default=True, description="when the head reads only the first ([CLS]) token, compute the fused graph's last "
        "layer (queries, attention output, feed-forward, LayerNorms) for that token alone; exact, parity-checked")


class DynamicQuant(Strict):
    type: Literal["dynamic"] = "dynamic"
    per_channel: bool = Field(default=True, description="one weight scale per output column (quantize_dynamic's default "
                              "is per-tensor): MiniLM SST-2 dev 89.45 -> 90.14 % at batch 1, same speed")
    reduce_range: bool = False
    optimized: bool = Field(default=True, description="quantize the fused (optimized) graph when there is one")
    include_nodes: list[str] = Field(default_factory=list, description="only these graph nodes (default: all MatMuls)")
    exclude_nodes: list[str] = Field(default_factory=list)
    layernorm: Literal["auto", "split", "fused"] = Field(
        default="auto", description="residual Add + LayerNorm on CPU: 'split' writes Sum + LayerNormalization, which ONNX "
        "Runtime does not fuse into SkipLayerNormalization (6x slower on ORT 1.32 CPU); 'auto' times both here")


class StaticQuant(Strict):
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
    optimized: bool = Field(default=True, description="quantize the ORT-fused graph when there is one (fused Attention gets "
                            "dynamic QAttention); false: the plain export")
    max_drop: float | None = Field(default=None, ge=0, description="accuracy points (perplexity for LMs) INT8 may lose")
    max_drop_relative: float | None = Field(default=None, ge=0, le=1, description="fraction of the fp32 metric")
    fallback_trials: int = Field(default=4, ge=0, le=64)
    layernorm: Literal["auto", "split", "fused"] = Field(
        default="auto", description="residual Add + LayerNorm on CPU: 'split' writes Sum + LayerNormalization, which ONNX "
        "Runtime does not fuse into SkipLayerNormalization (6x slower on ORT 1.32 CPU); 'auto' times both here")

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


class QATQuant(Strict):
    """Export the model trained with ``qat:`` (in finetune / distill) as an ONNX QDQ graph with INT8 weights."""

    type: Literal["qat"] = "qat"
    opset: int = Field(default=17, ge=13, le=23, description="QDQ per-channel weights need opset >= 13")
    tolerance: float = Field(default=0.05, gt=0, le=100, description="largest |ONNX − fake-quant PyTorch| logit difference")
    quantize_embeddings: bool = Field(default=True, description="int8 embedding tables (weight-only, dequantized rows)")
    layernorm: Literal["auto", "split", "fused"] = Field(
        default="auto", description="residual Add + LayerNorm on CPU: 'split' writes Sum + LayerNormalization, which ONNX "
        "Runtime does not fuse into SkipLayerNormalization (6x slower on ORT 1.32 CPU); 'auto' times both here")


class WeightOnlyQuant(Strict):
    """Weight-only quantization of the exported graph's MatMuls (ONNX Runtime MatMulNBits, round to nearest); see
    compressor/quantize/weight_only.py."""

    block_size: Literal[16, 32, 64, 128, 256] = Field(default=32, description="input rows sharing one scale; must "
                                                      "divide every quantized layer's input width")
    symmetric: bool = Field(default=True, description="false: a zero point per block as well")
    include_lm_head: bool = Field(default=False, description="also quantize the output projection (the MatMul that "
                                  "yields logits): smaller and faster, usually a larger perplexity cost")
    accuracy_level: Literal[0, 1, 2, 3, 4] | None = Field(
        default=4, description="MatMulNBits compute type on CPU: 4 = int8 activations per block (the fast kernel, as "
        "onnxruntime-genai's builder uses), 0 / None = fp32")


class Int4Quant(WeightOnlyQuant):
    type: Literal["int4"] = "int4"


class Int8WeightQuant(WeightOnlyQuant):
    type: Literal["int8_weight"] = "int8_weight"


QuantizeStage = Annotated[Union[DynamicQuant, StaticQuant, QATQuant, Int4Quant, Int8WeightQuant],
                          Field(discriminator="type")]


def _stage_tag(v: Any) -> str | None:
    if isinstance(v, dict) and len(v) == 1:
        return str(next(iter(v)))
    if isinstance(v, BaseModel):
        return v.__class__.__name__.removesuffix("Item").lower()
    return None


class FinetuneItem(Strict):
    finetune: FinetuneStage = Field(default_factory=FinetuneStage)

    @field_validator("finetune", mode="before")
    @classmethod
    def _none(cls, v: Any) -> Any:
        return {} if v is None else v


class DistillItem(Strict):
    distill: DistillStage


class ExportItem(Strict):
    export: ExportStage = Field(default_factory=ExportStage)

    @field_validator("export", mode="before")
    @classmethod
    def _none(cls, v: Any) -> Any:
        return {} if v is None else v


class QuantizeItem(Strict):
    quantize: QuantizeStage


class PruneItem(Strict):
    prune: PruneStage


STAGE_NAMES = ("finetune", "distill", "prune", "export", "quantize")

StageItem = Annotated[
    Union[
        Annotated[FinetuneItem, Tag("finetune")],
        Annotated[DistillItem, Tag("distill")],
        Annotated[PruneItem, Tag("prune")],
        Annotated[ExportItem, Tag("export")],
        Annotated[QuantizeItem, Tag("quantize")],
    ],
    Discriminator(
        _stage_tag,
        custom_error_type="stage",
        custom_error_message="each stage is a mapping with one key: " + ", ".join(STAGE_NAMES),
    ),
]


# ---------------------------------------------------------------- evaluate / bench / output
class EvaluateConfig(Strict):
    splits: list[Literal["dev", "test"]] = Field(default_factory=lambda: ["dev", "test"])
    batch_size: int = Field(default=64, ge=1, le=65536)
    artifacts: list[Literal["torch", "onnx", "int8", "int4", "baseline"]] = Field(
        default_factory=lambda: ["torch", "onnx", "int8", "int4", "baseline"],
        description="baseline: the uncompressed model (distillation teacher, or the model before pruning), "
                    "evaluated and benchmarked in the same run (PyTorch, and ONNX when the recipe exports)")


class BenchConfig(Strict):
    enabled: bool = True
    batch_sizes: list[Annotated[int, Field(ge=1, le=4096)]] = Field(default_factory=lambda: [1, 8])
    seq_lengths: list[Annotated[int, Field(ge=1, le=32768)]] = Field(default_factory=lambda: [128])
    warmup: int = Field(default=5, ge=0, le=10_000)
    iterations: int = Field(default=30, ge=1, le=100_000, description="timed runs per shape and artifact, over all rounds")
    rounds: int = Field(default=5, ge=1, le=1000,
                        description="interleaved rounds: every artifact is timed once per round (iterations / rounds "
                                    "runs each); a speed-up is claimed only when the rounds agree")
    threads: int | None = Field(default=None, ge=1, le=1024)
    devices: list[Literal["cpu", "cuda", "tensorrt"]] = Field(
        default_factory=lambda: ["cpu", "cuda", "tensorrt"],
        description="cuda: PyTorch and ONNX Runtime's CUDA EP; tensorrt: the fp32 ONNX graphs on ORT's TensorRT EP; "
                    "GPU devices are skipped with a note where there is none")
    bitsandbytes: list[Literal["int8", "nf4"]] = Field(
        default_factory=lambda: ["int8", "nf4"],
        description="on CUDA: the final model loaded by bitsandbytes in 8-bit and 4-bit NF4, as extra variants")


class OutputConfig(Strict):
    dir: PathStr | None = Field(default=None, description="parent of the run dir; relative to the recipe file; default: "
                            "runs/ in the current working directory")
    name: str | None = None
    keep_checkpoints: bool = Field(default=False, description="keep every stage's model snapshot once the run is complete "
                                   "(default: they are removed; model/ holds the final model)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not NAME_RE.match(v):
            raise ValueError("run name may hold letters, digits, '.', '_' and '-' only (no '/' or '..')")
        if v is not None and set(v) <= {"."}:
            raise ValueError("run name may not be '.' or '..'")
        return v


class Recipe(Strict):
    name: str = "run"
    seed: int = Field(default=42, ge=0, le=2**32 - 1)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    model: ModelConfig
    data: DataConfig
    stages: list[StageItem] = Field(default_factory=list)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    bench: BenchConfig = Field(default_factory=BenchConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    # where the recipe came from: (file, {path tuple: line}), for errors found while running
    _source: tuple[str, dict] = PrivateAttr(default=("recipe", {}))

    def error(self, field: str, message: str):
        """A RecipeError for ``field`` (dotted path) pointing at its line in the recipe file."""
        from compressor.core.errors import RecipeError

        file, lines = self._source
        path = tuple(int(p) if p.isdigit() else p for p in field.split("."))
        line = None
        while path and line is None:
            line, path = lines.get(path), path[:-1]
        return RecipeError(message, file, line, field)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return OutputConfig._name(v)  # same rule: it names the run directory

    def stage_list(self) -> list[tuple[str, BaseModel]]:
        """[(kind, config), ...] in recipe order."""
        out = []
        for item in self.stages:
            kind = next(iter(type(item).model_fields))
            out.append((kind, getattr(item, kind)))
        return out
