"""Vocabulary trimming: keep only the tokens the training data uses.

For small encoders the embedding table is about half the model (MiniLM-L6: 11.7 M of 22.7 M parameters,
30,522 tokens x 384), while a task's corpus uses a few thousand distinct tokens. This stage

1. counts the token ids of the tokenized training split;
2. keeps every special token, every token seen at least ``min_count`` times and, with
   ``keep_single_chars``, every one-character token and its ``##x`` continuation form (so an unseen
   word still splits into characters instead of becoming [UNK]);
3. numbers the kept tokens in their old order (so [PAD] stays 0 where it was), slices the rows of the
   input embeddings and of the output embeddings / LM head (tied or not), updates ``config.vocab_size``
   and the special token ids in the config;
4. writes a WordPiece tokenizer over the kept tokens (same class and settings; pieces no longer in the
   vocabulary become [UNK], as WordPiece does for any unknown piece);
5. checks that texts made only of kept tokens get exactly the remapped ids and the same logits.

WordPiece is greedy longest-match-first, so a word whose old pieces are all kept splits the same way
in the smaller vocabulary: no longer match can appear in a subset. Only WordPiece (BERT-family)
tokenizers are supported; BPE / Unigram vocabularies are merge- or score-based and need more care.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from compressor.core.errors import ModelError
from compressor.core.registry import STAGES
from compressor.models import count_parameters
from compressor.pipeline.context import RunContext
from compressor.prune.vocab_tokenizer import remap_tokenizer, tokenizer_json
from compressor.recipe.schema import VocabularyPrune

log = logging.getLogger("compressor")

CONFIG_TOKEN_IDS = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id", "decoder_start_token_id")
ATOL = 1e-5


def count_tokens(id_lists: Iterable[Sequence[int]]) -> Counter:
    """How often each token id occurs in ``id_lists`` (the input_ids of the training split)."""
    counts: Counter = Counter()
    for ids in id_lists:
        counts.update(int(i) for i in ids)
    return counts


def _config_ids(config) -> list[int]:
    out = []
    for name in CONFIG_TOKEN_IDS:
        v = getattr(config, name, None)
        out += [int(x) for x in (v if isinstance(v, (list, tuple)) else [v]) if x is not None]
    return out


def select_tokens(
    vocab: dict[str, int],
    special: Iterable[int],
    counts: Counter,
    rows: int,
    min_count: int,
    keep_single_chars: bool,
    prefix: str = "##",
) -> tuple[list[int], dict[str, int]]:
    """Sorted old ids to keep, and how many were kept for each reason (special / frequent / single chars)."""
    special_ids = {i for i in special if 0 <= i < rows}
    frequent = {i for i, c in counts.items() if c >= min_count and 0 <= i < rows} - special_ids
    chars: set[int] = set()
    if keep_single_chars:
        chars = {
            i for t, i in vocab.items() if 0 <= i < rows and (len(t) == 1 or (t.startswith(prefix) and len(t) == len(prefix) + 1))
        }
        chars -= special_ids | frequent
    keep = sorted(special_ids | frequent | chars)
    return keep, {"special": len(special_ids), "frequent": len(frequent), "single_chars": len(chars)}


def embedding_parameters(model) -> int:
    params = {
        id(p): p for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m is not None for p in m.parameters()
    }
    return sum(p.numel() for p in params.values())


def slice_vocab_rows(model, keep: Sequence[int]) -> None:
    """Keep rows ``keep`` (old ids, in order) of the input and output embeddings, in place.

    Every reference to a sliced parameter is replaced, so tied weights (GPT-2 wte / lm_head, a BERT
    MLM decoder bias shared with its head) stay tied.
    """
    emb = model.get_input_embeddings()
    rows = emb.weight.shape[0]
    out = model.get_output_embeddings()
    if out is not None and out.weight.shape[0] != rows:
        raise ModelError(
            f"the output embeddings have {out.weight.shape[0]} rows but the input embeddings {rows}; cannot trim the vocabulary"
        )
    replaced: dict[int, tuple[torch.nn.Parameter, torch.nn.Parameter]] = {}

    def slice_(p: torch.nn.Parameter) -> None:
        if id(p) not in replaced:
            idx = torch.as_tensor(list(keep), dtype=torch.long, device=p.device)
            new = torch.nn.Parameter(p.detach().index_select(0, idx).clone(), requires_grad=p.requires_grad)
            replaced[id(p)] = (p, new)

    slice_(emb.weight)
    if out is not None:
        slice_(out.weight)
        if getattr(out, "bias", None) is not None and out.bias.shape[0] == rows:
            slice_(out.bias)
    for module in model.modules():
        for name, p in list(module._parameters.items()):
            if p is not None and id(p) in replaced:
                module._parameters[name] = replaced[id(p)][1]
    new_id = {old: new for new, old in enumerate(keep)}
    emb.num_embeddings = len(keep)
    if getattr(emb, "padding_idx", None) is not None:
        emb.padding_idx = new_id.get(emb.padding_idx)
    if out is not None and hasattr(out, "out_features"):
        out.out_features = len(keep)
    text_cfg = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    for cfg in {id(c): c for c in (model.config, text_cfg)}.values():
        if hasattr(cfg, "vocab_size"):
            cfg.vocab_size = len(keep)
    for cfg in {id(c): c for c in (model.config, text_cfg, getattr(model, "generation_config", None)) if c is not None}.values():
        for name in CONFIG_TOKEN_IDS:
            v = getattr(cfg, name, None)
            if isinstance(v, (list, tuple)):
                setattr(cfg, name, [new_id[int(x)] for x in v if int(x) in new_id])
            elif v is not None:
                setattr(cfg, name, new_id.get(int(v)))


def _encode(tokenizer, texts: Sequence, max_length: int, **kw):
    if texts and isinstance(texts[0], (tuple, list)):
        a, b = zip(*texts)
        return tokenizer(list(a), list(b), truncation=True, max_length=max_length, **kw)
    return tokenizer(list(texts), truncation=True, max_length=max_length, **kw)


def _logits(model, enc, use_types: bool) -> torch.Tensor:
    from compressor.arch.signature import encoder_signature

    device = next(model.parameters()).device
    names = encoder_signature(model.config, token_type_ids=use_types).input_names
    with torch.inference_mode():
        return model(**{k: enc[k].to(device) for k in names if k in enc}).logits.float().cpu()


def _check_text(vocab: dict[str, int], keep: Sequence[int], special: set[int], n: int = 64) -> str:
    """A text made of kept whole-word tokens, for when no sample texts are given."""
    kept = set(keep) - special
    return " ".join([t for t, i in sorted(vocab.items(), key=lambda kv: kv[1]) if i in kept and not t.startswith("##")][:n])


def trim_vocabulary(
    model,
    tokenizer,
    counts: Counter,
    min_count: int = 1,
    keep_single_chars: bool = True,
    texts: Sequence | None = None,
    max_length: int = 128,
    check_batch: int = 16,
):
    """Trim ``model`` (in place) and ``tokenizer`` to the kept tokens; returns (model, tokenizer, info).

    ``texts`` (e.g. a sample of the training texts) are used to verify that texts made of kept tokens
    tokenize to the remapped ids and give the same logits; without them a text of kept tokens is made up.
    """
    tj = tokenizer_json(tokenizer)
    vocab: dict[str, int] = dict(tj["model"]["vocab"])
    vocab.update({a["content"]: a["id"] for a in tj.get("added_tokens") or []})
    rows = model.get_input_embeddings().weight.shape[0]
    if max(vocab.values()) >= rows:
        raise ModelError(f"the tokenizer has ids up to {max(vocab.values())} but the embedding table only {rows} rows")
    keep, reasons = select_tokens(
        vocab,
        list(tokenizer.all_special_ids) + _config_ids(model.config),
        counts,
        rows,
        min_count,
        keep_single_chars,
        tj["model"].get("continuing_subword_prefix") or "##",
    )
    kept = set(keep)
    total = sum(counts.values())
    covered = sum(c for i, c in counts.items() if i in kept)
    info: dict[str, Any] = {
        "vocab_before": rows,
        "vocab_after": len(keep),
        "params_before": count_parameters(model),
        "embedding_params_before": embedding_parameters(model),
        "kept": reasons,
        "occurrences": total,
        "coverage": covered / total if total else 1.0,
    }
    new_tok, checked = _slice_and_verify(model, tokenizer, vocab, keep, texts, max_length, check_batch)
    info.update(params_after=count_parameters(model), embedding_params_after=embedding_parameters(model), **checked)
    return model, new_tok, info


def _slice_and_verify(
    model, tokenizer, vocab: dict[str, int], keep: Sequence[int], texts: Sequence | None, max_length: int, check_batch: int
):
    """Slice the model's rows and remap the tokenizer to ``keep``; check that texts made only of kept tokens get the
    remapped ids and the same logits. Returns (the new tokenizer, what was verified)."""
    rows = model.get_input_embeddings().weight.shape[0]
    kept, new_id = set(keep), {old: new for new, old in enumerate(keep)}
    # the reference: old tokenization and logits of texts whose tokens are all kept
    made_up = _check_text(vocab, keep, set(tokenizer.all_special_ids))
    sample = list(texts or [])
    sample.append((made_up, made_up) if sample and isinstance(sample[0], (tuple, list)) else made_up)
    old_enc = _encode(tokenizer, sample, max_length)
    eligible = [j for j, ids in enumerate(old_enc["input_ids"]) if all(i in kept for i in ids)]
    batch = [sample[j] for j in eligible[:check_batch]] or [""]  # "" is [CLS] [SEP]: always kept
    use_types = bool(getattr(model.config, "type_vocab_size", 0))
    was_training = model.training
    model.eval()
    try:
        ref = _logits(model, _encode(tokenizer, batch, max_length, padding=True, return_tensors="pt"), use_types)
        slice_vocab_rows(model, keep)
        new_tok = remap_tokenizer(tokenizer, keep)
        new_enc = _encode(new_tok, sample, max_length)
        for j in eligible:
            want = [new_id[i] for i in old_enc["input_ids"][j]]
            if new_enc["input_ids"][j] != want:
                raise RuntimeError(
                    f"vocabulary trimming: the trimmed tokenizer disagrees on {sample[j]!r}: "
                    f"{new_enc['input_ids'][j][:20]} vs remapped {want[:20]}"
                )
        got = _logits(model, _encode(new_tok, batch, max_length, padding=True, return_tensors="pt"), use_types)
    finally:
        model.train(was_training)
    if ref.shape[-1] == rows and got.shape[-1] == len(keep):  # LM logits: one per (kept) token
        ref = ref[..., torch.as_tensor(keep)]
    if ref.shape != got.shape or not torch.allclose(ref, got, atol=ATOL, rtol=ATOL):
        diff = (ref - got).abs().max().item() if ref.shape == got.shape else float("nan")
        raise RuntimeError(
            f"vocabulary trimming: logits changed (max |diff| {diff:.3g}, shapes {tuple(ref.shape)} vs {tuple(got.shape)})"
        )
    if model.config.vocab_size != model.get_input_embeddings().weight.shape[0]:
        raise RuntimeError("vocabulary trimming: config.vocab_size disagrees with the embedding table")
    return new_tok, {"verified_texts": len(eligible), "verified_logits": len(batch)}


def _sample(items: Sequence, n: int) -> list:
    if len(items) <= n:
        return list(items)
    step = len(items) / n
    return [items[int(k * step)] for k in range(n)]


@STAGES.register(VocabularyPrune)
def run_vocabulary(ctx: RunContext, cfg: VocabularyPrune) -> dict:
    from compressor.train.finetune import dev_eval_fn

    if ctx.task != "sequence-classification":
        raise ctx.recipe.error(ctx.stage_path, f"vocabulary pruning is for task sequence-classification, not {ctx.task}")
    try:
        tokenizer_json(ctx.tokenizer)
    except ModelError as e:
        raise ctx.recipe.error(ctx.stage_path, str(e)) from None
    counts = count_tokens(f["input_ids"] for f in ctx.encoded["train"].features)
    extra = extra_counts(ctx, cfg)
    added = sum(1 for i in extra if i not in counts)
    counts.update(extra)
    eval_fn = dev_eval_fn(ctx, 64)
    dev_before = eval_fn(ctx.model) if eval_fn else None
    max_length = ctx.recipe.data.max_length
    ctx.model, ctx.tokenizer, info = trim_vocabulary(
        ctx.model,
        ctx.tokenizer,
        counts,
        cfg.min_count,
        cfg.keep_single_chars,
        texts=_sample(ctx.dataset.splits["train"].texts, 256),
        max_length=max_length,
    )
    ctx.retokenize(ctx.tokenizer)
    eval_fn = dev_eval_fn(ctx, 64)
    dev_after = eval_fn(ctx.model) if eval_fn else None
    metric = ctx.primary_metric[0]
    dev = "" if dev_before is None else f"; dev {metric} {dev_before[metric]:.4f} -> {dev_after[metric]:.4f}"
    log.info(
        "vocabulary: %d -> %d tokens (%d special, %d frequent, %d single chars, %.2f%% of training tokens covered); "
        "parameters %.2fM -> %.2fM%s",
        info["vocab_before"],
        info["vocab_after"],
        info["kept"]["special"],
        info["kept"]["frequent"],
        info["kept"]["single_chars"],
        100 * info["coverage"],
        info["params_before"] / 1e6,
        info["params_after"] / 1e6,
        dev,
    )
    return {
        "type": "vocabulary",
        **{
            k: info[k]
            for k in (
                "vocab_before",
                "vocab_after",
                "params_before",
                "params_after",
                "embedding_params_before",
                "embedding_params_after",
                "kept",
                "coverage",
            )
        },
        "extra_texts": list(cfg.extra_texts),
        "tokens_only_in_extra_texts": added,
        "dev_before": dev_before,
        "dev_after": dev_after,
    }


def extra_counts(ctx: RunContext, cfg: VocabularyPrune) -> Counter:
    """Token counts of the ``extra_texts`` files (tokenized in chunks, no special tokens)."""
    from compressor.core.errors import CompressorError, DataError
    from compressor.data import read_text
    from compressor.models import resolve

    counts: Counter = Counter()
    for j, spec in enumerate(cfg.extra_texts):
        field = f"{ctx.stage_path}.extra_texts.{j}"
        try:
            path = Path(resolve(spec, ctx.recipe_dir, field))
            lines = [t.strip() for t in read_text(path, ctx.recipe.data.encoding).replace("\r", "").split("\n") if t.strip()]
        except (CompressorError, DataError) as e:
            raise ctx.recipe.error(field, str(e)) from None
        if not lines:
            raise ctx.recipe.error(field, f"{path}: no text in it")
        before = len(counts)
        for i in range(0, len(lines), 1024):
            counts.update(count_tokens(ctx.tokenizer(lines[i : i + 1024], add_special_tokens=False, verbose=False)["input_ids"]))
        log.info(
            "vocabulary: %s: %d lines, %d tokens not seen in the files before it", path.name, len(lines), len(counts) - before
        )
    return counts
