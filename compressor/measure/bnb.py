"""bitsandbytes variants (CUDA only): the final model loaded in 8-bit (LLM.int8) and 4-bit NF4.

They are measured beside the run's other artifacts — accuracy on the same splits, latency on the
GPU — and never on a CPU: bitsandbytes' kernels are CUDA kernels. Without a GPU, or without the
package (``pip install compressor[gpu]``), the report says they were skipped and why.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

log = logging.getLogger("compressor")
VARIANTS = {"int8": "bnb-int8", "nf4": "bnb-nf4"}  # recipe name -> artifact name


def unavailable(device_ok: bool) -> str | None:
    """Why the bitsandbytes variants cannot be measured here, or None."""
    if not device_ok:
        return "bitsandbytes 8-bit / NF4: skipped (needs a CUDA GPU; none is visible)"
    if importlib.util.find_spec("bitsandbytes") is None:
        return "bitsandbytes 8-bit / NF4: skipped (the bitsandbytes package is not installed: pip install 'compressor[gpu]')"
    return None


def load(model_dir: Path, task: str, mode: str):
    """The saved model at ``model_dir`` quantized on load by bitsandbytes, on GPU 0."""
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, BitsAndBytesConfig

    if mode == "int8":
        q = BitsAndBytesConfig(load_in_8bit=True)
    else:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        q = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=False
        )
    cls = AutoModelForSequenceClassification if task == "sequence-classification" else AutoModelForCausalLM
    # LLM.int8 casts fp32 activations to fp16 and says so on every call (thousands of lines in a run's log)
    logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
    model = cls.from_pretrained(str(model_dir), quantization_config=q, device_map={"": 0})
    return model.eval()


def is_bnb(model) -> bool:
    return bool(getattr(model, "is_loaded_in_8bit", False) or getattr(model, "is_loaded_in_4bit", False))


def footprint(model) -> int:
    """Bytes of the quantized weights in GPU memory (there is no file: bitsandbytes quantizes on load)."""
    return int(model.get_memory_footprint())
