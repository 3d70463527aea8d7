"""Find and load models and tokenizers: local directories, ``pkg://`` resources, Hub ids."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from compressor.arch.families import FAMILIES, STRUCTURE_KEY
from compressor.core.errors import CompressorError, ModelError
from compressor.core.pkgpath import PREFIX, split_pkg

log = logging.getLogger("compressor")

# model_type -> ONNX Runtime optimizer model_type, from the families registry (compressor/arch/)
ORT_OPTIMIZER_TYPES = {mt: fam.ort_optimizer for mt, fam in FAMILIES.items() if fam.ort_optimizer}


def resolve(spec: str, base_dir: Path | None = None, what: str = "path", must_exist: bool = True) -> Path | str:
    """Turn a recipe path into a filesystem path.

    ``pkg://package/sub/path`` is resolved inside an installed Python package (not imported); a relative
    path is taken relative to ``base_dir`` (the recipe's folder). A string that is no local
    path but looks like ``org/name`` is returned unchanged as a Hub id when ``must_exist`` is false.
    """
    if spec.startswith(PREFIX):
        try:
            package, sub = split_pkg(spec)
        except ValueError as e:
            raise CompressorError(f"{what}: {e}") from None
        try:
            found = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            found = None
        if found is None or not found.submodule_search_locations:
            raise CompressorError(f"{what}: {spec}: Python package '{package}' is not installed")
        # the package's folder, found without importing it (importing may run arbitrary code)
        root = Path(list(found.submodule_search_locations)[0]).resolve()
        p = (root / sub).resolve() if sub else root
        if not p.is_relative_to(root):  # a symlink inside the package that points out of it
            raise CompressorError(f"{what}: {spec}: leads outside package '{package}' ({root})")
        if not p.exists():
            raise CompressorError(f"{what}: {spec}: no '{sub}' inside package '{package}' ({root})")
        return p
    p = Path(spec).expanduser()
    relative = not p.is_absolute() and base_dir is not None
    if relative:
        p = base_dir / p
    if p.exists():
        return p.resolve()
    if not must_exist and _looks_like_hub_id(spec):
        return spec
    raise CompressorError(f"{what}: {spec}: no such file or directory" + (f" (looked in {p.parent})" if relative else ""))


def _looks_like_hub_id(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) <= 2 and all(parts) and not spec.startswith((".", "/", "~")) and ".." not in spec


def _wrap_load_error(src: Any, e: Exception) -> ModelError:
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if "size mismatch" in str(e):
        lines = [ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln]
        text = "config and weights disagree: " + (lines[0] if lines else text)
    if isinstance(src, str) and not Path(src).exists():
        text = f"not a local directory, and the Hub could not be reached or has no such model ({text})"
    return ModelError(f"model {src}: {text}")


# encoder-only families that AutoModelForCausalLM still maps (to *LMHeadModel / *ForCausalLM): without
# config.is_decoder they attend in both directions, so next-token training and perplexity are meaningless
ENCODER_ONLY = {
    "bert",
    "roberta",
    "xlm-roberta",
    "xlm-roberta-xl",
    "camembert",
    "electra",
    "ernie",
    "data2vec-text",
    "rembert",
    "roc_bert",
    "megatron-bert",
    "xmod",
    "bert-generation",
}
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "vocab.json",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
    "merges.txt",
)


def _check_local_dir(src: Path | str, what: str) -> None:
    if isinstance(src, Path) and src.exists() and not src.is_dir():
        raise ModelError(f"model {src}: is a file; {what} must be a model directory (config.json, weights, tokenizer)")


def load_config(src: Path | str, trust_remote_code: bool = False, revision: str | None = None):
    from transformers import AutoConfig

    _check_local_dir(src, "model.path")
    try:
        return AutoConfig.from_pretrained(str(src), trust_remote_code=trust_remote_code, revision=revision)
    except Exception as e:  # transformers raises OSError, ValueError, KeyError… for bad dirs
        raise _wrap_load_error(src, e) from e


def load_tokenizer(src: Path | str, trust_remote_code: bool = False, revision: str | None = None):
    from transformers import AutoTokenizer

    _check_local_dir(src, "model.path")
    if isinstance(src, Path) and src.is_dir() and not any((src / f).is_file() for f in TOKENIZER_FILES):
        # transformers >= 5 would build an empty tokenizer that maps every word to [UNK]
        raise ModelError(
            f"model {src}: no tokenizer files ({', '.join(TOKENIZER_FILES[:4])}, ...); "
            "save the tokenizer next to the model (tokenizer.save_pretrained)"
        )
    try:
        tok = AutoTokenizer.from_pretrained(str(src), trust_remote_code=trust_remote_code, revision=revision)
    except Exception as e:
        raise _wrap_load_error(src, e) from e
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ModelError(f"model {src}: tokenizer has neither a pad nor an eos token")
        tok.pad_token = tok.eos_token
    return tok


# transformers 5 names its generic tokenizers.json-backed class TokenizersBackend, a name transformers 4.x (which
# Optimum's ONNX packages still pin) does not know; PreTrainedTokenizerFast is the same class under its name in both
PORTABLE_TOKENIZER_CLASS = {"TokenizersBackend": "PreTrainedTokenizerFast"}
LOAD_TIME_KEYS = ("is_local", "local_files_only")  # how this process loaded it, not what the tokenizer is


def save_tokenizer(tokenizer, folder: Path | str) -> None:
    """``tokenizer.save_pretrained(folder)`` with a tokenizer_config.json that transformers 4.x loads too."""
    import json

    tokenizer.save_pretrained(str(folder))
    path = Path(folder) / "tokenizer_config.json"
    if not path.is_file():
        return
    cfg = json.loads(path.read_text(encoding="utf-8"))
    new = {k: v for k, v in cfg.items() if k not in LOAD_TIME_KEYS}
    if new.get("tokenizer_class") in PORTABLE_TOKENIZER_CLASS:
        new["tokenizer_class"] = PORTABLE_TOKENIZER_CLASS[new["tokenizer_class"]]
    if new != cfg:
        path.write_text(json.dumps(new, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def load_model(
    src: Path | str,
    task: str,
    num_labels: int | None = None,
    label_names: list[str] | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
):
    """Load a model for ``task``; a classifier gets a fresh head when the label count changes."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    if trust_remote_code:
        log.warning("trust_remote_code is on (set by the recipe): code shipped with %s will run", src)
    config = load_config(src, trust_remote_code, revision)
    model_type = getattr(config, "model_type", "?")
    # shapes are checked below: a new classification head may differ, the rest of the model may not
    kwargs: dict[str, Any] = dict(
        trust_remote_code=trust_remote_code, revision=revision, ignore_mismatched_sizes=True, output_loading_info=True
    )
    new_head = False
    if task == "sequence-classification":
        cls = AutoModelForSequenceClassification
        if num_labels is not None:
            kwargs["num_labels"] = num_labels
            if label_names:
                kwargs["id2label"] = dict(enumerate(label_names))
                kwargs["label2id"] = {n: i for i, n in enumerate(label_names)}
            new_head = getattr(config, "num_labels", None) != num_labels
    else:
        cls = AutoModelForCausalLM
        if model_type in ENCODER_ONLY and not getattr(config, "is_decoder", False):
            raise ModelError(
                f"model {src}: architecture '{model_type}' is an encoder, not a causal language model; "
                "use it with task: sequence-classification, or pick a decoder (gpt2, llama, ...) for causal-lm"
            )
    if getattr(config, STRUCTURE_KEY, None):  # heads removed by structured pruning (see compressor/arch/slicing.py)
        from compressor.arch.slicing import load_structured

        if num_labels is not None and task == "sequence-classification" and config.num_labels != num_labels:
            raise ModelError(f"model {src}: structurally pruned with {config.num_labels} labels; the data has {num_labels}")
        model = load_structured(cls, src, config)
        if task == "causal-lm":
            model.config.use_cache = False
        return model
    try:
        model, info = cls.from_pretrained(str(src), **kwargs)
    except ValueError as e:
        if "Unrecognized configuration class" in str(e):
            raise ModelError(
                f"model {src}: architecture '{getattr(config, 'model_type', '?')}' is not supported for task {task}"
            ) from e
        raise _wrap_load_error(src, e) from e
    except Exception as e:
        raise _wrap_load_error(src, e) from e
    prefix = getattr(model, "base_model_prefix", "") or ""
    for key, *shapes in sorted(info.get("mismatched_keys") or [], key=lambda m: str(m[0])):
        if not new_head or (prefix and str(key).startswith(prefix + ".")):
            ckpt, want = (tuple(x) for x in shapes[:2]) if len(shapes) >= 2 else ("?", "?")
            raise ModelError(
                f"model {src}: config and weights disagree: {key} is {ckpt} in the weights but {want} "
                "by config.json (edited config, or weights from another model?)"
            )
    # a classifier whose task head starts random (a pretrained encoder): its accuracy means nothing before training
    model.compressor_new_head = task == "sequence-classification" and (
        new_head or any(prefix and not str(k).startswith(prefix + ".") for k in info.get("missing_keys") or [])
    )
    _check_base_keys(src, prefix, info)
    if task == "causal-lm":
        model.config.use_cache = False
    return model


_BENIGN_KEYS = ("pooler", "position_ids", "inv_freq")  # optional heads, and buffers older checkpoints stored


def _check_base_keys(src, prefix: str, info: dict) -> None:
    """The base model (everything but the task head) must be exactly the checkpoint's: a config that declares more
    layers than the weights hold would evaluate a partly random model, one that declares fewer would drop layers."""

    def base(keys) -> list[str]:
        return sorted(
            str(k)
            for k in keys or []
            if prefix and str(k).startswith(prefix + ".") and not any(b in str(k) for b in _BENIGN_KEYS)
        )

    missing, unexpected = base(info.get("missing_keys")), base(info.get("unexpected_keys"))
    if missing or unexpected:
        parts = (
            [f"{len(missing)} weights the config needs are not in the checkpoint (e.g. {missing[0]})"] if missing else []
        ) + ([f"{len(unexpected)} checkpoint weights have no place in the model (e.g. {unexpected[0]})"] if unexpected else [])
        raise ModelError(
            f"model {src}: config and weights disagree: {'; '.join(parts)} (edited config.json, e.g. "
            "num_hidden_layers, or weights from another model?)"
        )


def set_eager_attention(model) -> None:
    """Eager attention exports to a graph ONNX Runtime's optimizer fuses into Attention ops."""
    try:
        model.set_attn_implementation("eager")
    except Exception:  # older transformers, or models without the switch
        if hasattr(model.config, "_attn_implementation"):
            model.config._attn_implementation = "eager"


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


TASKS = ("auto", "sequence-classification", "causal-lm")


def task_of(config, where: Path, task: str) -> str:
    """The task of a model folder: ``task`` unless "auto", else from its architectures in config.json."""
    if task != "auto":
        if task not in TASKS:
            raise ModelError(f"--task {task}: choose one of {', '.join(TASKS)}")
        return task
    archs = list(getattr(config, "architectures", None) or [])
    if any(a.endswith("ForSequenceClassification") for a in archs):
        return "sequence-classification"
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return "causal-lm"
    raise ModelError(
        f"model {where}: architecture {archs or getattr(config, 'model_type', '?')} is neither a sequence "
        "classifier nor a causal LM; pass --task"
    )


def model_folder(path: Path, onnx_too: bool = False) -> Path:
    """``path`` if it is a Hugging Face model directory (config.json in it), else a one-line ModelError."""
    if not path.exists():
        raise ModelError(f"{path}: no such file or directory")
    if not path.is_dir():
        raise ModelError(
            f"{path}: is a file, not a model directory: give a Hugging Face model directory (config.json, "
            "weights, tokenizer)" + (" or an .onnx file" if onnx_too else "")
        )
    if not (path / "config.json").is_file():
        raise ModelError(f"{path}: not a Hugging Face model directory (no config.json)")
    return path
