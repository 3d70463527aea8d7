"""A causal LM of our own, from nothing: a byte-level BPE tokenizer trained (``tokenizers``) on the training part of a
text, and a small randomly initialised decoder saved as a model folder that a recipe then trains
(``recipes/tinyshakespeare.yaml``: finetune on the same text, its last 10 % held out as the dev split).

    python -m compressor.scratch --text ../shared/data/tinyshakespeare/input.txt --out runs/tinyshakespeare-init

The tokenizer sees only the first ``--train-fraction`` of the text (by characters), so the held-out tail is text
it was not fitted on. The model has Llama's layout (RMSNorm, rotary positions, gated MLP) at GPT-2-small-like
proportions scaled down (4 layers, hidden 128, 4 heads of 32, 2,048 tokens): a layout onnxruntime-genai's model builder accepts,
so its INT4 can be compared with ours on the same weights. Its weights start random, so they sit on no quantization
grid.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

SPECIAL = "<|endoftext|>"


def train_tokenizer(text: str, out: Path, vocab_size: int = 2048) -> None:
    """Byte-level BPE (GPT-2's scheme) fitted on ``text``; saved as tokenizer.json + tokenizer_config.json."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator([text], vocab_size=vocab_size, min_frequency=2, special_tokens=[SPECIAL], show_progress=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, bos_token=SPECIAL, eos_token=SPECIAL, pad_token=SPECIAL, unk_token=SPECIAL
    )
    fast.save_pretrained(out)


def init_model(
    out: Path,
    vocab_size: int,
    layers: int = 4,
    hidden: int = 128,
    heads: int = 4,
    kv_heads: int = 4,
    intermediate: int = 384,
    positions: int = 512,
    seed: int = 0,
) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=intermediate,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=hidden // heads,
        max_position_embeddings=positions,
        tie_word_embeddings=True,
        bos_token_id=0,
        eos_token_id=0,
        pad_token_id=0,
        rope_theta=10000.0,
    )
    LlamaForCausalLM(config).save_pretrained(out)


def make(text_path: Path, out: Path, train_fraction: float = 0.9, vocab_size: int = 2048, **model_kwargs) -> Path:
    text = text_path.read_text(encoding="utf-8")
    out.mkdir(parents=True, exist_ok=True)
    train_tokenizer(text[: int(len(text) * train_fraction)], out, vocab_size)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    init_model(out, len(tok), **model_kwargs)
    (out / "scratch.json").write_text(
        json.dumps(
            {
                "text": str(text_path),
                "train_fraction": train_fraction,
                "tokenizer": "byte-level BPE (tokenizers)",
                "vocab_size": len(tok),
                **model_kwargs,
            },
            indent=2,
        )
        + "\n"
    )
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--text", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--train-fraction", type=float, default=0.9)
    p.add_argument("--vocab", type=int, default=2048)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    if not a.text.is_file():
        raise SystemExit(f"error: --text: {a.text} is not a file")
    make(
        a.text,
        a.out,
        a.train_fraction,
        a.vocab,
        layers=a.layers,
        hidden=a.hidden,
        heads=a.heads,
        kv_heads=a.heads,
        intermediate=3 * a.hidden,
        seed=a.seed,
    )
    print(f"{a.out}: tokenizer and an untrained model; train it with compressor run recipes/tinyshakespeare.yaml")


if __name__ == "__main__":
    main()
