"""The recipe format. Every model rejects unknown keys; stages are single-key mappings.

    stages:
      - finetune: {epochs: 3, lr: 5.0e-5}
      - export: {}
      - quantize: {type: dynamic}

One module per stage holds that stage's config classes and its discriminated union (``type:``); a new
criterion / scheme is a class in that module plus one member of its union. ``from compressor.recipe.schema
import X`` keeps working for every public name.
"""

from compressor.recipe.schema.base import (
    BIG,
    CAUSAL_LM,
    CLASSIFIER,
    EXPORTED,
    FAKE_QUANT,
    NAME_RE,
    SPARSE,
    TRIMMED,
    Contract,
    Need,
    PathStr,
    StageConfig,
    Strict,
)
from compressor.recipe.schema.data import DataConfig, ModelConfig, SplitConfig
from compressor.recipe.schema.distill import (
    AttentionLoss,
    DistillLoss,
    DistillStage,
    HiddenLoss,
    LogitLoss,
    StudentConfig,
    TransferData,
)
from compressor.recipe.schema.export import ExportStage
from compressor.recipe.schema.prune import (
    DEFAULT_EXCLUDE,
    Criterion,
    MagnitudeCriterion,
    MovementCriterion,
    PruneStage,
    ScheduleConfig,
    SparseGPTCriterion,
    StructuredPrune,
    TaylorCriterion,
    UnstructuredPrune,
    VocabularyPrune,
    WandaCriterion,
)
from compressor.recipe.schema.quantize import (
    AwqQuant,
    DynamicQuant,
    GraphQuant,
    Int4Quant,
    Int8WeightQuant,
    QATQuant,
    QuantizeStage,
    SmoothQuantQuant,
    StaticQuant,
    WeightOnlyQuant,
)
from compressor.recipe.schema.recipe import (
    STAGE_NAMES,
    BenchConfig,
    DistillItem,
    EvaluateConfig,
    ExportItem,
    FinetuneItem,
    GenerationBench,
    OutputConfig,
    PruneItem,
    QuantizeItem,
    Recipe,
    StageItem,
)
from compressor.recipe.schema.train import FinetuneStage, LoRAConfig, PartialConfig, QATConfig, TrainConfig

__all__ = [
    "BIG", "NAME_RE", "PathStr", "Strict", "StageConfig", "Contract", "Need",
    "CAUSAL_LM", "CLASSIFIER", "EXPORTED", "FAKE_QUANT", "SPARSE", "TRIMMED",
    "DataConfig", "ModelConfig", "SplitConfig",
    "AttentionLoss", "DistillLoss", "DistillStage", "HiddenLoss", "LogitLoss", "StudentConfig", "TransferData",
    "ExportStage",
    "DEFAULT_EXCLUDE", "Criterion", "MagnitudeCriterion", "MovementCriterion", "PruneStage", "ScheduleConfig",
    "StructuredPrune", "TaylorCriterion", "UnstructuredPrune", "VocabularyPrune", "WandaCriterion",
    "SparseGPTCriterion",
    "AwqQuant", "DynamicQuant", "GraphQuant", "Int4Quant", "Int8WeightQuant", "QATQuant", "QuantizeStage",
    "SmoothQuantQuant", "StaticQuant", "WeightOnlyQuant",
    "STAGE_NAMES", "BenchConfig", "GenerationBench", "DistillItem", "EvaluateConfig", "ExportItem", "FinetuneItem", "OutputConfig",
    "PruneItem", "QuantizeItem", "Recipe", "StageItem",
    "FinetuneStage", "LoRAConfig", "PartialConfig", "QATConfig", "TrainConfig",
]
