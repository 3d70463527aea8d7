"""The files a generation runtime needs beside a cached decoder graph: ``genai_config.json`` for
onnxruntime-genai (format of its model builder, 0.18), the model's config.json / generation_config.json and the
tokenizer files.

The graph's names come from the signature (``past_key_values.%d.key`` in, ``present.%d.key`` out), so the config
says what the graph has. onnxruntime-genai picks its decoder class from ``model.type``; families it does not list
(OPT, GPT-2, whose "gpt2" type expects
another input layout) are declared as ``llama``, whose decoder-only runner only uses the tensor names given here.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from compressor.arch.signature import config_value, decoder_signature
from compressor.core.rundir import atomic_write_json

log = logging.getLogger("compressor")

GENAI_TYPES = {"llama", "mistral", "qwen2", "phi3", "granite", "olmo", "smollm"}
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "vocab.txt",
    "tokenizer.model",
    "added_tokens.json",
    "chat_template.jinja",
)


def _token_id(config: Any, name: str, fallback: int | None = None) -> int | list[int] | None:
    v = config_value(config, (name,))
    return fallback if v is None else v


def genai_config(config: Any, filename: str = "model.onnx", context_length: int | None = None) -> dict:
    """The ``genai_config.json`` contents for the cached graph ``filename`` of a model with ``config``."""
    sig = decoder_signature(config, with_past=True)
    model_type = str(config_value(config, ("model_type",), "llama"))
    heads = int(config_value(config, ("num_attention_heads", "n_head")))
    hidden = int(config_value(config, ("hidden_size", "n_embd")))
    context = context_length or int(config_value(config, ("max_position_embeddings", "n_positions"), 2048))
    eos = _token_id(config, "eos_token_id")
    pad = _token_id(config, "pad_token_id", eos if not isinstance(eos, list) else eos[0])
    return {
        "model": {
            "bos_token_id": _token_id(config, "bos_token_id", eos),
            "context_length": context,
            "decoder": {
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "filename": filename,
                "head_size": sig.kv.head_dim,
                "hidden_size": hidden,
                "inputs": {
                    "input_ids": "input_ids",
                    "attention_mask": "attention_mask",
                    "position_ids": "position_ids",
                    "past_key_names": "past_key_values.%d.key",
                    "past_value_names": "past_key_values.%d.value",
                },
                "outputs": {"logits": "logits", "present_key_names": "present.%d.key", "present_value_names": "present.%d.value"},
                "num_attention_heads": heads,
                "num_hidden_layers": sig.kv.layers,
                "num_key_value_heads": sig.kv.kv_heads,
            },
            "eos_token_id": eos,
            "pad_token_id": pad,
            "type": model_type if model_type in GENAI_TYPES else "llama",
            "vocab_size": int(sig.vocab_size),
        },
        "search": {
            "diversity_penalty": 0.0,
            "do_sample": False,
            "early_stopping": True,
            "length_penalty": 1.0,
            "max_length": context,
            "min_length": 0,
            "no_repeat_ngram_size": 0,
            "num_beams": 1,
            "num_return_sequences": 1,
            "past_present_share_buffer": False,
            "repetition_penalty": 1.0,
            "temperature": 1.0,
            "top_k": 1,
            "top_p": 1.0,
        },
    }


def write_runtime_files(folder: Path, config: Any, filename: str, tokenizer_dir: Path | None = None) -> list[str]:
    """Write genai_config.json, config.json and the tokenizer files into ``folder`` (the graph's folder).
    Returns the names written."""
    folder = Path(folder)
    atomic_write_json(folder / "genai_config.json", genai_config(config, filename))
    written = ["genai_config.json"]
    if hasattr(config, "to_json_string"):
        (folder / "config.json").write_text(config.to_json_string(use_diff=False))
        written.append("config.json")
    if tokenizer_dir is not None:
        for name in TOKENIZER_FILES + ("generation_config.json",):
            src = Path(tokenizer_dir) / name
            if src.is_file() and src.resolve() != (folder / name).resolve():
                shutil.copyfile(src, folder / name)
                written.append(name)
    return written


def read_genai_config(folder: Path) -> dict:
    return json.loads((Path(folder) / "genai_config.json").read_text())
