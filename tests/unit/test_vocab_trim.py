"""Vocabulary trimming on tiny BERT / GPT-2 models with hand-made WordPiece vocabularies (seconds)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from compressor.core.errors import ModelError, RecipeError
from compressor.prune.vocab import count_tokens, run_vocabulary, slice_vocab_rows, trim_vocabulary

LETTERS = list("abdeglmortvw")
# [unused*] before [UNK]/[CLS]/[SEP] (as in BERT's vocab) so the special ids really move when trimmed
VOCAB = (
    ["[PAD]", "[unused0]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    + ["the", "movie", "was", "good", "great", "bad", "awful", "film", "plot", "dull", ".", "!", "##s"]
    + LETTERS
    + ["##" + c for c in LETTERS]
)
TRAIN = ["The movie was good .", "the film was great !", "the plot was good .", "the movies was good"]


def make_bert(folder: Path, vocab: list[str] = VOCAB, seed: int = 0) -> Path:
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True).save_pretrained(folder)
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        num_labels=2,
    )
    BertForSequenceClassification(cfg).save_pretrained(folder)
    return folder


def load(folder: Path, causal: bool = False):
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    cls = AutoModelForCausalLM if causal else AutoModelForSequenceClassification
    return cls.from_pretrained(folder).eval(), AutoTokenizer.from_pretrained(folder)


def logits(model, tokenizer, texts) -> torch.Tensor:
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits


def tokens(tokenizer, text: str) -> list[str]:
    return tokenizer.convert_ids_to_tokens(tokenizer(text)["input_ids"])


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory) -> Path:
    return make_bert(tmp_path_factory.mktemp("vocab") / "bert")


def trim(folder: Path, texts=TRAIN, **kw):
    model, tok = load(folder)
    counts = count_tokens(tok(texts)["input_ids"])
    return trim_vocabulary(model, tok, counts, texts=texts, **kw)


def test_count_tokens():
    assert count_tokens([[2, 5, 5, 3], [2, 3]]) == {2: 2, 3: 2, 5: 2}


def test_saved_and_reloaded_trimmed_model_gives_identical_logits(bert_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model, tok, info = trim(bert_dir, keep_single_chars=False)
    model.save_pretrained(tmp_path / "out")
    tok.save_pretrained(tmp_path / "out")
    new_model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "out").eval()
    new_tok = AutoTokenizer.from_pretrained(tmp_path / "out")
    old_model, old_tok = load(bert_dir)
    texts = TRAIN + ["GOOD plot !", "the the movie"]  # kept tokens only (upper case: still lower-cased)
    torch.testing.assert_close(logits(new_model, new_tok, texts), logits(old_model, old_tok, texts), atol=1e-5, rtol=0)
    assert type(new_tok) is type(old_tok) and new_tok.do_lower_case
    # [PAD] [UNK] [CLS] [SEP] [MASK] + the movie was good . film great ! plot ##s
    assert info["vocab_before"] == len(VOCAB) and info["vocab_after"] == len(new_tok) == 15
    assert info["kept"] == {"special": 5, "frequent": 10, "single_chars": 0} and info["coverage"] == 1.0
    assert new_model.config.vocab_size == new_model.get_input_embeddings().weight.shape[0] == 15
    assert info["params_before"] - info["params_after"] == (len(VOCAB) - 15) * 32
    assert info["embedding_params_before"] - info["embedding_params_after"] == (len(VOCAB) - 15) * 32
    assert info["verified_texts"] == len(TRAIN) + 1 and info["verified_logits"] == len(TRAIN) + 1


def test_unseen_word_becomes_unk_or_splits_into_kept_characters(bert_dir):
    _, old_tok = load(bert_dir)
    assert tokens(old_tok, "bad dull") == ["[CLS]", "bad", "dull", "[SEP]"]
    _, tok, info = trim(bert_dir, keep_single_chars=False)
    assert tokens(tok, "bad dull movie") == ["[CLS]", "[UNK]", "[UNK]", "movie", "[SEP]"]
    _, tok, info = trim(bert_dir, keep_single_chars=True)
    # "dull" has no ##u piece: as in WordPiece, a word with one unknown piece is [UNK] as a whole
    assert tokens(tok, "bad dull movie") == ["[CLS]", "b", "##a", "##d", "[UNK]", "movie", "[SEP]"]
    # "." and "!" were frequent already; every letter and its ##x form is kept
    assert info["kept"]["single_chars"] == 2 * len(LETTERS)
    assert info["vocab_after"] == 15 + 2 * len(LETTERS)


def test_min_count_drops_rare_tokens(bert_dir):
    _, tok, info = trim(bert_dir, min_count=2, keep_single_chars=False)
    # seen once: film, great, !, plot, ##s; seen often: the movie was good . (and [CLS] [SEP])
    assert tokens(tok, "the film was great !") == ["[CLS]", "the", "[UNK]", "was", "[UNK]", "[UNK]", "[SEP]"]
    assert tokens(tok, "the movies") == ["[CLS]", "the", "[UNK]", "[SEP]"]
    assert info["vocab_after"] == 5 + 5 and info["kept"] == {"special": 5, "frequent": 5, "single_chars": 0}
    assert info["occurrences"] == 28 and info["coverage"] == pytest.approx(23 / 28)


def test_special_ids_are_remapped(bert_dir, tmp_path):
    model, tok, _ = trim(bert_dir, keep_single_chars=False)
    ids = {t: tok.convert_tokens_to_ids(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}
    assert ids == {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}  # were 0, 3, 4, 5, 6
    assert (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id) == (0, 1, 2, 3)
    enc = tok(["good", "the movie was good"], padding=True)
    assert enc["input_ids"][0][0] == 2 and enc["input_ids"][0][2] == 3 and enc["input_ids"][0][3:] == [0, 0, 0]
    assert enc["input_ids"][1][0] == 2 and enc["input_ids"][1][-1] == 3
    pair = tok("good", "movie")
    assert pair["input_ids"][0] == 2 and pair["input_ids"].count(3) == 2 and pair["token_type_ids"][-1] == 1
    assert model.config.pad_token_id == 0 and model.get_input_embeddings().padding_idx == 0
    tok.save_pretrained(tmp_path)
    pp = json.loads((tmp_path / "tokenizer.json").read_text())["post_processor"]
    assert pp["special_tokens"]["[CLS]"]["ids"] == [2] and pp["special_tokens"]["[SEP]"]["ids"] == [3]


def test_embedding_rows_follow_old_order(bert_dir):
    old_model, old_tok = load(bert_dir)
    model, tok, _ = trim(bert_dir, keep_single_chars=False)
    old_rows = old_model.get_input_embeddings().weight
    new_rows = model.get_input_embeddings().weight
    for t in ("[PAD]", "[SEP]", "the", "##s", "!"):
        torch.testing.assert_close(new_rows[tok.convert_tokens_to_ids(t)], old_rows[old_tok.convert_tokens_to_ids(t)])
    new_ids = [tok.convert_tokens_to_ids(t) for t in tok.convert_ids_to_tokens(range(len(tok)))]
    old_ids = [old_tok.convert_tokens_to_ids(t) for t in tok.convert_ids_to_tokens(range(len(tok)))]
    assert new_ids == list(range(len(tok))) and old_ids == sorted(old_ids)


def test_bpe_tokenizer_is_refused(bert_dir):
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    bpe = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.BPE(vocab={"a": 0, "b": 1, "ab": 2, "<eos>": 3}, merges=[("a", "b")])),
        eos_token="<eos>",
    )
    model, _ = load(bert_dir)
    with pytest.raises(ModelError, match=r"supports WordPiece \(BERT-family\) tokenizers.*is BPE"):
        trim_vocabulary(model, bpe, count_tokens([[0, 1, 2]]))
    assert model.config.vocab_size == len(VOCAB) and model.get_input_embeddings().weight.shape[0] == len(VOCAB)


def test_causal_lm_with_tied_head_is_sliced_consistently(tmp_path):
    from compressor import testing as T

    T.tiny_gpt2(tmp_path / "gpt2")
    model, tok = load(tmp_path / "gpt2", causal=True)
    assert model.lm_head.weight is model.transformer.wte.weight
    texts = ["the movie was good .", "we saw the film"]
    counts = count_tokens(tok(texts)["input_ids"])
    model, new_tok, info = trim_vocabulary(model, tok, counts, texts=texts, keep_single_chars=False)
    keep = sorted(tok.convert_tokens_to_ids(new_tok.convert_ids_to_tokens(range(len(new_tok)))))
    assert model.lm_head.weight is model.transformer.wte.weight and model.lm_head.weight.shape[0] == len(keep)
    assert model.config.vocab_size == len(keep) == info["vocab_after"]
    assert (model.config.bos_token_id, model.config.eos_token_id, model.config.pad_token_id) == (2, 3, 0)
    assert model.generation_config.eos_token_id == 3
    model.save_pretrained(tmp_path / "out")
    new_tok.save_pretrained(tmp_path / "out")
    reloaded, reloaded_tok = load(tmp_path / "out", causal=True)
    assert reloaded.lm_head.weight is reloaded.transformer.wte.weight
    old_model, _ = load(tmp_path / "gpt2", causal=True)
    torch.testing.assert_close(logits(reloaded, reloaded_tok, texts), logits(old_model, tok, texts)[..., keep], atol=1e-5, rtol=0)


def test_untied_output_embeddings_and_bias_are_sliced():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=20,
            n_embd=16,
            n_layer=1,
            n_head=2,
            n_positions=32,
            tie_word_embeddings=False,
            pad_token_id=5,
            eos_token_id=[7, 19],
        )
    )
    model.lm_head.bias = torch.nn.Parameter(torch.randn(20))
    old_w, old_head, old_bias = (
        t.detach().clone() for t in (model.transformer.wte.weight, model.lm_head.weight, model.lm_head.bias)
    )
    assert model.lm_head.weight is not model.transformer.wte.weight
    keep = [0, 3, 5, 7, 11]
    slice_vocab_rows(model, keep)
    torch.testing.assert_close(model.transformer.wte.weight, old_w[keep])
    torch.testing.assert_close(model.lm_head.weight, old_head[keep])
    torch.testing.assert_close(model.lm_head.bias, old_bias[keep])
    assert model.lm_head.out_features == 5 and model.config.vocab_size == 5
    assert model.config.pad_token_id == 2 and model.config.eos_token_id == [3]  # 19 was dropped
    assert model(torch.tensor([[1, 2, 4]])).logits.shape == (1, 3, 5)


# ------------------------------------------------------------------ the stage
def make_context(tiny_dir: Path, tmp_path: Path, task: str = "sequence-classification"):
    from compressor.pipeline.orchestrate import build_context
    from compressor.recipe.schema import Recipe

    if task == "causal-lm":
        model, data = {"path": str(tiny_dir / "gpt2"), "task": task}, {"train": str(tiny_dir / "lm.txt"), "max_length": 16}
    else:
        model, data = (
            {"path": str(tiny_dir / "bert")},
            {"train": str(tiny_dir / "sent.csv"), "split": {"dev": 0.2}, "max_length": 32},
        )
    recipe = Recipe.model_validate({"model": model, "data": data})
    ctx = build_context(recipe, tmp_path, tmp_path / "run")
    ctx.stage_path = "stages.0.prune"
    return ctx


def test_stage_trims_reencodes_and_reports(tiny_dir, tmp_path):
    from compressor.recipe.schema import VocabularyPrune

    ctx = make_context(tiny_dir, tmp_path)
    old_tok = ctx.tokenizer
    old_dev = [list(f["input_ids"]) for f in ctx.encoded["dev"].features]
    result = run_vocabulary(ctx, VocabularyPrune(keep_single_chars=False))
    assert result["type"] == "vocabulary" and result["vocab_before"] == 111
    assert result["vocab_after"] < result["vocab_before"] and result["params_after"] < result["params_before"]
    assert result["dev_before"] == result["dev_after"]  # the dev sentences use the training words only
    assert ctx.model.config.vocab_size == len(ctx.tokenizer) == result["vocab_after"]
    keep = old_tok.convert_tokens_to_ids(ctx.tokenizer.convert_ids_to_tokens(range(len(ctx.tokenizer))))
    new_dev = [list(f["input_ids"]) for f in ctx.encoded["dev"].features]
    assert new_dev == [[keep.index(i) for i in ids] for ids in old_dev]
    assert set(ctx.encoded) == set(ctx.dataset.splits)
    json.dumps(result)  # goes to metrics.json


def test_stage_refuses_causal_lm(tiny_dir, tmp_path):
    from compressor.recipe.schema import VocabularyPrune

    ctx = make_context(tiny_dir, tmp_path, task="causal-lm")
    with pytest.raises(RecipeError, match="sequence-classification"):
        run_vocabulary(ctx, VocabularyPrune())


def test_stage_keeps_the_tokens_of_extra_texts(tiny_dir, tmp_path):
    """Words the training split lacks survive when an extra (unlabelled) text file uses them."""
    from compressor.recipe.schema import VocabularyPrune

    small = tmp_path / "tiny"  # a training set of four words; "superb" and "dull" only in the extra text
    shutil.copytree(tiny_dir, small, ignore=shutil.ignore_patterns("gpt2", "llama"))
    (small / "sent.csv").write_text(
        "text,label\n" + "".join(f"{w} film,{y}\n" for w, y in [("good", "positive"), ("bad", "negative")] * 20)
    )
    (tmp_path / "general.txt").write_text("a superb film\r\n\n dull \n")
    plain = run_vocabulary(make_context(small, tmp_path / "a"), VocabularyPrune(keep_single_chars=False))
    ctx = make_context(small, tmp_path / "b")
    result = run_vocabulary(ctx, VocabularyPrune(keep_single_chars=False, extra_texts=[str(tmp_path / "general.txt")]))
    kept = ctx.tokenizer.get_vocab()
    assert {"superb", "dull", "a"} <= set(kept) and "great" not in kept
    assert result["tokens_only_in_extra_texts"] == 3 and result["vocab_after"] == plain["vocab_after"] + 3
    assert result["extra_texts"] == [str(tmp_path / "general.txt")]


def test_stage_names_a_missing_extra_text(tiny_dir, tmp_path):
    from compressor.recipe.schema import VocabularyPrune

    ctx = make_context(tiny_dir, tmp_path)
    with pytest.raises(RecipeError, match="extra_texts.0: nope.txt: no such file"):
        run_vocabulary(ctx, VocabularyPrune(extra_texts=["nope.txt"]))
