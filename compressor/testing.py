"""Tiny models, tokenizers and data sets built locally, for tests and offline demos.

Nothing here downloads: models come from configs, the tokenizer from a vocab file.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

POSITIVE = ["good", "great", "excellent", "wonderful", "lovely", "superb", "brilliant", "fine", "happy", "charming"]
NEGATIVE = ["bad", "awful", "terrible", "boring", "dull", "poor", "horrible", "sad", "ugly", "weak"]
NEUTRAL = [
    "the",
    "a",
    "movie",
    "film",
    "story",
    "plot",
    "was",
    "is",
    "very",
    "quite",
    "and",
    "but",
    "acting",
    "music",
    "scene",
    "really",
    "it",
    "this",
    "of",
    "with",
    "cast",
    "ending",
    "script",
    "we",
    "saw",
]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = NEUTRAL + POSITIVE + NEGATIVE + [f"w{i}" for i in range(60)]


def write_tokenizer(folder: Path) -> Path:
    """A WordPiece (BERT) tokenizer over a small vocab, saved with save_pretrained."""
    from transformers import BertTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokens = SPECIAL + WORDS + ["."]
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n")
    try:  # transformers >= 5 takes the vocabulary itself
        tok = BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=True)
    except TypeError:
        tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(folder)
    return folder


def write_bpe_tokenizer(folder: Path) -> Path:
    """A byte-level BPE tokenizer (GPT-2 / Llama-3 / Qwen style) trained on the test words, saved as transformers 5
    saves such a tokenizer when it has no model-specific class (``TokenizersBackend``)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([" ".join(WORDS)] * 5, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )
    fast.save_pretrained(folder)
    return Path(folder)


def vocab_size() -> int:
    return len(SPECIAL) + len(WORDS) + 1


def tiny_bert(
    folder: Path, num_labels: int = 2, layers: int = 2, hidden: int = 32, heads: int = 4, intermediate: int = 64, seed: int = 0
) -> Path:
    """A tiny BertForSequenceClassification with tokenizer, saved to ``folder``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=vocab_size(),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=intermediate,
        max_position_embeddings=128,
        num_labels=num_labels,
    )
    model = BertForSequenceClassification(cfg)
    write_tokenizer(folder)
    model.save_pretrained(folder)
    return Path(folder)


def tiny_gpt2(folder: Path, layers: int = 2, hidden: int = 32, heads: int = 4, seed: int = 0) -> Path:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = GPT2Config(
        vocab_size=vocab_size(),
        n_embd=hidden,
        n_layer=layers,
        n_head=heads,
        n_positions=128,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=0,
    )
    model = GPT2LMHeadModel(cfg)
    write_tokenizer(folder)
    model.save_pretrained(folder)
    return Path(folder)


def tiny_llama(folder: Path, layers: int = 2, hidden: int = 32, heads: int = 4, kv_heads: int = 2, seed: int = 0) -> Path:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab_size(),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=128,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=0,
    )
    model = LlamaForCausalLM(cfg)
    write_tokenizer(folder)
    model.save_pretrained(folder)
    return Path(folder)


# tiny configs of every family the test matrix covers: (config class, causal LM?, keyword arguments)
_H = dict(hidden_size=32, num_attention_heads=4, num_hidden_layers=2, intermediate_size=64)
_ENC = dict(_H, max_position_embeddings=130, pad_token_id=0)
_DEC = dict(_H, max_position_embeddings=128, bos_token_id=2, eos_token_id=3, pad_token_id=0)
TINY = {
    "bert": ("BertConfig", False, dict(_ENC, max_position_embeddings=128)),
    "roberta": ("RobertaConfig", False, _ENC),
    "xlm-roberta": ("XLMRobertaConfig", False, _ENC),
    "electra": ("ElectraConfig", False, dict(_ENC, embedding_size=16)),
    "distilbert": (
        "DistilBertConfig",
        False,
        dict(dim=32, hidden_dim=64, n_heads=4, n_layers=2, max_position_embeddings=128, pad_token_id=0),
    ),
    "albert": ("AlbertConfig", False, dict(_ENC, embedding_size=16)),
    "deberta-v2": (
        "DebertaV2Config",
        False,
        dict(
            _ENC,
            relative_attention=True,
            pos_att_type=["p2c", "c2p"],
            position_buckets=16,
            share_att_key=False,
            type_vocab_size=0,
        ),
    ),
    "mpnet": ("MPNetConfig", False, _ENC),
    "modernbert": (
        "ModernBertConfig",
        False,
        dict(
            _H,
            max_position_embeddings=128,
            pad_token_id=0,
            bos_token_id=2,
            eos_token_id=3,
            cls_token_id=2,
            sep_token_id=3,
            local_attention=16,
            global_attn_every_n_layers=2,
        ),
    ),
    "gpt2": (
        "GPT2Config",
        True,
        dict(n_embd=32, n_layer=2, n_head=4, n_positions=128, bos_token_id=2, eos_token_id=3, pad_token_id=0),
    ),
    "llama": ("LlamaConfig", True, dict(_DEC, num_key_value_heads=2)),
    "qwen2": ("Qwen2Config", True, dict(_DEC, num_key_value_heads=2)),
    "mistral": ("MistralConfig", True, dict(_DEC, num_key_value_heads=2, sliding_window=None)),
    "opt": (
        "OPTConfig",
        True,
        dict(
            hidden_size=32,
            num_attention_heads=4,
            num_hidden_layers=2,
            ffn_dim=64,
            word_embed_proj_dim=32,
            max_position_embeddings=128,
            bos_token_id=2,
            eos_token_id=3,
            pad_token_id=0,
        ),
    ),
    "phi": ("PhiConfig", True, dict(_DEC, partial_rotary_factor=0.5)),
    "phi3": ("Phi3Config", True, dict(_DEC, num_key_value_heads=2)),
    "gemma": ("GemmaConfig", True, dict(_DEC, num_key_value_heads=1, head_dim=8)),
}


def tiny_model(model_type: str, folder: Path, num_labels: int = 2, seed: int = 0) -> Path:
    """A tiny randomly initialised model of ``model_type`` (a key of TINY) with the WordPiece test tokenizer:
    a sequence classifier for encoders, a causal LM for decoders."""
    import torch
    import transformers

    name, causal, kwargs = TINY[model_type]
    torch.manual_seed(seed)
    cfg = getattr(transformers, name)(vocab_size=vocab_size(), **kwargs)
    if causal:
        model = transformers.AutoModelForCausalLM.from_config(cfg)
    else:
        cfg.num_labels = num_labels
        model = transformers.AutoModelForSequenceClassification.from_config(cfg)
    write_tokenizer(folder)
    model.save_pretrained(folder)
    return Path(folder)


def _tiny_causal(folder: Path, config_cls: str, model_cls: str, seed: int, **cfg) -> Path:
    import torch
    import transformers

    torch.manual_seed(seed)
    config = getattr(transformers, config_cls)(vocab_size=vocab_size(), bos_token_id=2, eos_token_id=3, pad_token_id=0, **cfg)
    model = getattr(transformers, model_cls)(config)
    write_tokenizer(folder)
    model.save_pretrained(folder)
    return Path(folder)


def tiny_qwen2(folder: Path, layers: int = 2, hidden: int = 32, heads: int = 4, kv_heads: int = 2, seed: int = 0) -> Path:
    return _tiny_causal(
        folder,
        "Qwen2Config",
        "Qwen2ForCausalLM",
        seed,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=128,
        tie_word_embeddings=False,
    )


def tiny_mistral(folder: Path, layers: int = 2, hidden: int = 32, heads: int = 4, kv_heads: int = 1, seed: int = 0) -> Path:
    """Grouped-query attention: 4 query heads share 1 key / value head."""
    return _tiny_causal(
        folder,
        "MistralConfig",
        "MistralForCausalLM",
        seed,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=128,
        sliding_window=None,
    )


def tiny_phi3(folder: Path, layers: int = 2, hidden: int = 32, heads: int = 4, kv_heads: int = 2, seed: int = 0) -> Path:
    return _tiny_causal(
        folder,
        "Phi3Config",
        "Phi3ForCausalLM",
        seed,
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=128,
        original_max_position_embeddings=128,
        sliding_window=None,
    )


def tiny_opt(folder: Path, layers: int = 2, hidden: int = 32, heads: int = 4, seed: int = 0) -> Path:
    return _tiny_causal(
        folder,
        "OPTConfig",
        "OPTForCausalLM",
        seed,
        hidden_size=hidden,
        ffn_dim=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        max_position_embeddings=128,
        word_embed_proj_dim=hidden,
    )


def sentiment_sentence(rng: random.Random, label: int) -> str:
    cue = POSITIVE if label == 1 else NEGATIVE
    words = [rng.choice(NEUTRAL) for _ in range(rng.randint(4, 10))]
    for _ in range(rng.randint(1, 2)):
        words.insert(rng.randrange(len(words) + 1), rng.choice(cue))
    return " ".join(words)


def write_sentiment_csv(path: Path, n: int = 400, seed: int = 0, label_names: tuple = ("negative", "positive")) -> Path:
    """A learnable two-class sentiment CSV (``text``, ``label`` columns)."""
    rng = random.Random(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        for i in range(n):
            label = i % 2
            w.writerow([sentiment_sentence(rng, label) + f" w{i % 60}", label_names[label]])
    return path


def write_lm_text(path: Path, n_lines: int = 300, seed: int = 0) -> Path:
    """Text with structure a tiny LM can learn (repeated phrases)."""
    rng = random.Random(seed)
    phrases = [
        "the movie was very good .",
        "the plot is quite dull .",
        "we saw the film and it was great .",
        "this story is really sad .",
        "the cast and the music were lovely .",
    ]
    path = Path(path)
    path.write_text("\n".join(rng.choice(phrases) for _ in range(n_lines)) + "\n", encoding="utf-8")
    return path
