"""The whole recipe: the stage list (single-key mappings), evaluate / bench / output, and ``Recipe``."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, Discriminator, Field, PrivateAttr, Tag, field_validator

from compressor.recipe.schema.base import NAME_RE, PathStr, Strict
from compressor.recipe.schema.data import DataConfig, ModelConfig
from compressor.recipe.schema.distill import DistillStage
from compressor.recipe.schema.export import ExportStage
from compressor.recipe.schema.prune import PruneStage
from compressor.recipe.schema.quantize import QuantizeStage
from compressor.recipe.schema.train import FinetuneStage


def _stage_tag(v: Any) -> str | None:
    if isinstance(v, dict) and len(v) == 1:
        return str(next(iter(v)))
    if isinstance(v, BaseModel):
        return v.__class__.__name__.removesuffix("Item").lower()
    return None


def _none_is_empty(v: Any) -> Any:
    """`- finetune:` / `- export:` with nothing after the colon means the defaults."""
    return {} if v is None else v


class FinetuneItem(Strict):
    finetune: Annotated[FinetuneStage, BeforeValidator(_none_is_empty)] = Field(default_factory=FinetuneStage)


class DistillItem(Strict):
    distill: DistillStage


class ExportItem(Strict):
    export: Annotated[ExportStage, BeforeValidator(_none_is_empty)] = Field(default_factory=ExportStage)


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
        "evaluated and benchmarked in the same run (PyTorch, and ONNX when the recipe exports)",
    )


class GenerationBench(Strict):
    """Generation speed of a causal LM (prefill and decode with the KV cache), in the run report."""

    prompt: int = Field(default=128, ge=1, le=32768, description="prompt tokens of the timed prefill")
    new_tokens: int = Field(
        default=32,
        ge=2,
        le=32768,
        description="greedy tokens generated per measurement (the "
        "first by the prefill, the others by decode steps: tokens/s counts those)",
    )
    batch_sizes: list[Annotated[int, Field(ge=1, le=4096)]] = Field(default_factory=lambda: [1, 4])
    warmup: int = Field(default=1, ge=0, le=100)
    repeats: int = Field(
        default=3, ge=1, le=1000, description="timed measurements per artifact and batch size; the medians are reported"
    )


class BenchConfig(Strict):
    enabled: bool = True
    generation: GenerationBench | None = Field(
        default=None,
        description="causal LMs: prefill ms, decode tokens/s and peak memory of PyTorch (its KV cache) "
        "and every cached ONNX graph (export.with_past), each in a process of its own; "
        "`generation: {}` for the defaults",
    )
    batch_sizes: list[Annotated[int, Field(ge=1, le=4096)]] = Field(default_factory=lambda: [1, 8])
    seq_lengths: list[Annotated[int, Field(ge=1, le=32768)]] = Field(default_factory=lambda: [128])
    warmup: int = Field(default=5, ge=0, le=10_000)
    iterations: int = Field(default=30, ge=1, le=100_000, description="timed runs per shape and artifact, over all rounds")
    rounds: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="interleaved rounds: every artifact is timed once per round (iterations / rounds "
        "runs each); a speed-up is claimed only when the rounds agree",
    )
    threads: int | None = Field(default=None, ge=1, le=1024)
    devices: list[Literal["cpu", "cuda", "tensorrt"]] = Field(
        default_factory=lambda: ["cpu", "cuda", "tensorrt"],
        description="cuda: PyTorch and ONNX Runtime's CUDA EP; tensorrt: the fp32 ONNX graphs on ORT's TensorRT EP; "
        "GPU devices are skipped with a note where there is none",
    )
    bitsandbytes: list[Literal["int8", "nf4"]] = Field(
        default_factory=lambda: ["int8", "nf4"],
        description="on CUDA: the final model loaded by bitsandbytes in 8-bit and 4-bit NF4, as extra variants",
    )


class OutputConfig(Strict):
    dir: PathStr | None = Field(
        default=None,
        description="parent of the run dir; relative to the recipe file; default: runs/ in the current working directory",
    )
    name: str | None = None
    keep_checkpoints: bool = Field(
        default=False,
        description="keep every stage's model snapshot once the run is complete "
        "(default: they are removed; model/ holds the final model)",
    )

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
