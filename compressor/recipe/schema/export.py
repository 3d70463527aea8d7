"""The ``export:`` stage (ONNX)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from compressor.recipe.schema.base import CAUSAL_LM, EXPORTED, Contract, Need, StageConfig

GENAI_MISSING = "exporter: genai needs the onnxruntime-genai package, which is not installed: pip install onnxruntime-genai"


def genai_available() -> bool:
    """Whether onnxruntime-genai (its model builder) can be imported, without importing it."""
    import importlib.util

    try:
        return importlib.util.find_spec("onnxruntime_genai") is not None
    except (ImportError, ValueError):
        return False


class ExportStage(StageConfig):
    opset: int = Field(default=17, ge=11, le=23)
    tolerance: float = Field(default=1e-3, gt=0, le=10)
    exporter: Literal["auto", "torchscript", "dynamo", "genai"] = Field(
        default="auto",
        description="auto / torchscript / dynamo: our export (torch.onnx); genai: onnxruntime-genai's "
        "model builder writes the cached decoder graph (GroupQueryAttention with rotary, fused normalisations; "
        "with_past: true, supported architectures only, no position_ids input: exact without left padding)",
    )
    with_past: bool = Field(
        default=False,
        description="causal LMs: export with a key / value cache (position_ids, past_key_values.* in, "
        "present.* out; one graph for prefill and decode) plus genai_config.json and the tokenizer files",
    )
    optimize: bool = Field(default=True, description="run ONNX Runtime's transformer optimizer")
    cls_only_last_layer: bool = Field(
        default=True,
        description="when the head reads only the first ([CLS]) token, compute the fused graph's last "
        "layer (queries, attention output, feed-forward, LayerNorms) for that token alone; exact, parity-checked",
    )

    def contract(self) -> Contract:
        needs = (
            (Need(CAUSAL_LM, True, "with_past exports a key / value cache: it needs model.task: causal-lm", ("with_past",)),)
            if self.with_past
            else ()
        )
        problems: tuple = ()
        if self.exporter == "genai":
            if not self.with_past:
                problems = (
                    (
                        ("exporter",),
                        "genai (onnxruntime-genai's model builder) writes a decoder with a key / "
                        "value cache: set with_past: true",
                    ),
                )
            elif not genai_available():
                problems = ((("exporter",), GENAI_MISSING),)
        return Contract(needs=needs, produces={EXPORTED: ()}, problems=problems)
