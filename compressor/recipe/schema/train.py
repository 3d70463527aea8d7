"""Training settings shared by ``finetune`` and ``distill``, and QAT inside training."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from compressor.recipe.schema.base import BIG, FAKE_QUANT, SPARSE, Contract, Need, StageConfig, Strict, _patterns
from compressor.recipe.schema.prune import UnstructuredPrune

PEFT_MISSING = "LoRA needs the peft package, which is not installed: pip install 'compressor[llm]' (or pip install peft)"
BNB_MISSING = (
    "a 4-bit LoRA base (QLoRA) needs the bitsandbytes package, which is not installed: "
    "pip install 'compressor[qlora]' (or pip install bitsandbytes), or use base: full"
)


def _installed(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def peft_available() -> bool:
    return _installed("peft")


def bnb_available() -> bool:
    return _installed("bitsandbytes")


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


class LoRAConfig(Strict):
    """LoRA (Hu et al. 2021) through peft: only low-rank updates B·A of the target Linear layers train (a classifier's
    head trains fully); they are merged into the weights when the stage ends, so later stages see a plain model.
    Weights that are exactly zero before training (a pruned model) stay zero after the merge. With ``base: nf4`` /
    ``fp4`` it is QLoRA (Dettmers et al. 2023): the frozen weights of the target layers are held in 4 bits by
    bitsandbytes while the adapters train in full precision."""

    rank: int = Field(default=8, ge=1, le=4096)
    alpha: float = Field(default=16.0, gt=0, le=1_000_000, description="the update is scaled by alpha / rank")
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | None = Field(
        default=None,
        description="module names (a name or its last dotted parts, as peft matches them, e.g. q_proj); "
        "default: every Linear layer except the output / task head",
    )
    base: Literal["full", "nf4", "fp4"] = Field(
        default="full",
        description="how the frozen weights of the target layers are held while the adapters train: full (the model's "
        "precision), or 4-bit NF4 / FP4 blocks of 64 through bitsandbytes (QLoRA; pip install 'compressor[qlora]'; "
        "saves accelerator memory, the model is still loaded in full precision first); at the end the adapters are "
        "merged onto the dequantized base into plain Linear layers in the model's precision",
    )
    double_quant: bool = Field(
        default=False, description="with a 4-bit base: quantize the blocks' scales too (QLoRA's double quantization)"
    )

    @field_validator("target_modules")
    @classmethod
    def _targets(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and (not v or len(set(v)) != len(v) or any(not t.strip() for t in v)):
            raise ValueError("give one or more distinct, non-empty module names")
        return v

    @field_validator("double_quant")
    @classmethod
    def _double_quant(cls, v: bool, info: ValidationInfo) -> bool:
        if v and info.data.get("base") == "full":
            raise ValueError("double_quant quantizes the scales of a 4-bit base: give base: nf4 or fp4 with it")
        return v


class PartialConfig(Strict):
    """Partial fine-tuning: freeze parameters by pattern and / or train only the last N transformer layers."""

    freeze: list[str] = Field(default_factory=list, description="regexes (re.search) over parameter names to freeze")
    last_layers: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="only the last N transformer layers train (everything else, embeddings and head included, is frozen)",
    )

    _freeze = field_validator("freeze")(classmethod(lambda cls, v: _patterns(v)))


class TrainConfig(StageConfig):
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
    lora: LoRAConfig | None = Field(
        default=None,
        description="train LoRA adapters instead of the weights (peft; "
        "pip install 'compressor[llm]'), merged at the end of the stage",
    )
    partial: PartialConfig | None = Field(default=None, description="freeze part of the model while this stage trains")

    @field_validator("qat", mode="before")
    @classmethod
    def _qat_on(cls, v: Any) -> Any:
        return {} if v is True else (None if v is False else v)

    @field_validator("prune")
    @classmethod
    def _gradual(cls, v: UnstructuredPrune | None) -> UnstructuredPrune | None:
        from compressor.recipe.schema.prune import ONE_SHOT_CRITERIA

        if v is not None and v.criterion.type in ONE_SHOT_CRITERIA:
            raise ValueError(
                f"criterion {v.criterion.type} is one-shot (calibration, layer by layer): use it in a "
                "`- prune:` stage, then recover with a finetune / distill stage that keeps the masks"
            )
        if v is not None and v.pattern != "unstructured":
            raise ValueError(f"pattern {v.pattern} is applied one-shot: use it in a `- prune:` stage")
        return v

    @field_validator("lora")
    @classmethod
    def _lora_alone(cls, v: LoRAConfig | None, info: ValidationInfo) -> LoRAConfig | None:
        if v is not None and info.data.get("prune") is not None:
            raise ValueError(
                "LoRA keeps the masks of an earlier prune stage by itself; gradual `prune:` in the same "
                "stage is not supported (prune in a `- prune:` stage before this one)"
            )
        if v is not None and info.data.get("qat") is not None:
            raise ValueError("LoRA and qat in one stage are not supported: train QAT in a stage of its own")
        return v

    @field_validator("partial")
    @classmethod
    def _partial(cls, v: PartialConfig | None, info: ValidationInfo) -> PartialConfig | None:
        if v is not None and not v.freeze and v.last_layers is None:
            raise ValueError("say what to freeze: freeze patterns and / or last_layers")
        if v is not None and info.data.get("lora") is not None:
            raise ValueError("give lora or partial, not both (LoRA already freezes every weight it does not adapt)")
        return v

    def training_contract(self, new_model: bool, needs: tuple[Need, ...] = ()) -> Contract:
        """A stage that trains: the run's model (``new_model`` False), which must not regrow zeros an earlier stage
        made unless it prunes too, or a new model (a student) that drops them."""
        if not new_model and self.prune is None and self.lora is None:  # LoRA's merge keeps the zeros
            needs += (REGROW,)
        produces = {
            **({SPARSE: ("prune",)} if self.prune is not None else {}),
            **({FAKE_QUANT: ("qat",)} if self.qat is not None else {}),
        }
        problems: tuple = ()
        if self.lora is not None and not peft_available():
            problems = ((("lora",), PEFT_MISSING),)
        elif self.lora is not None and self.lora.base != "full" and not bnb_available():
            problems = ((("lora", "base"), BNB_MISSING),)
        return Contract(
            needs=needs,
            produces=produces,
            problems=problems,
            removes=(SPARSE,) if new_model else (),
            changes_model=True,
            trains=True,
            selects=True,
            compresses=self.prune is not None or self.qat is not None,
        )


REGROW = Need(
    SPARSE,
    False,
    "this stage trains the model that {source} made sparse, and would regrow its zeros: give it "
    "`prune:` with the same sparsity (schedule one_shot keeps the masks), or `lora:` (its merge keeps the zeros), "
    "or prune afterwards",
)


class FinetuneStage(TrainConfig):
    def contract(self) -> Contract:
        return self.training_contract(new_model=False)
