"""Find and load models and tokenizers: local directories, ``pkg://`` resources, Hub ids."""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

from compressor.errors import CompressorError, ModelError

log = logging.getLogger("compressor")

# model_type -> (ORT optimizer model_type); also the architectures we test end to end
ORT_OPTIMIZER_TYPES = {"bert": "bert", "roberta": "bert", "distilbert": "bert", "gpt2": "gpt2"}


def resolve(spec: str, base_dir: Path | None = None, what: str = "path", must_exist: bool = True) -> Path | str:
    """Turn a recipe path into a filesystem path.

    ``pkg://package/sub/path`` is resolved inside an installed Python package (not imported); a relative
    path is taken relative to ``base_dir`` (the recipe's folder). A string that is no local
    path but looks like ``org/name`` is returned unchanged as a Hub id when ``must_exist`` is false.
    """
    if spec.startswith("pkg://"):
        rest = spec[len("pkg://"):]
        package, _, sub = rest.partition("/")
        found = importlib.util.find_spec(package) if package and "." not in package else None
        if found is None or not found.submodule_search_locations:
            raise CompressorError(f"{what}: {spec}: Python package '{package}' is not installed")
        # the package's folder, found without importing it (importing may run arbitrary code)
        root = Path(list(found.submodule_search_locations)[0])
        p = (root / sub).resolve() if sub else root
        if not p.exists():
            raise CompressorError(f"{what}: {spec}: no '{sub}' inside package '{package}' ({root})")
        return p
    p = Path(spec).expanduser()
    if not p.is_absolute() and base_dir is not None:
        p = base_dir / p
    if p.exists():
        return p.resolve()
    if not must_exist and _looks_like_hub_id(spec):
        return spec
    raise CompressorError(f"{what}: {spec}: no such file or directory" + (f" (looked in {p.parent})" if base_dir else ""))


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


def load_config(src: Path | str, trust_remote_code: bool = False, revision: str | None = None):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(str(src), trust_remote_code=trust_remote_code, revision=revision)
    except Exception as e:  # transformers raises OSError, ValueError, KeyError… for bad dirs
        raise _wrap_load_error(src, e) from e


def load_tokenizer(src: Path | str, trust_remote_code: bool = False, revision: str | None = None):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(src), trust_remote_code=trust_remote_code, revision=revision)
    except Exception as e:
        raise _wrap_load_error(src, e) from e
    if tok.pad_token is None:
        if tok.eos_token is None:
            raise ModelError(f"model {src}: tokenizer has neither a pad nor an eos token")
        tok.pad_token = tok.eos_token
    return tok


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
    kwargs: dict[str, Any] = dict(trust_remote_code=trust_remote_code, revision=revision)
    if task == "sequence-classification":
        cls = AutoModelForSequenceClassification
        if num_labels is not None:
            kwargs["num_labels"] = num_labels
            if label_names:
                kwargs["id2label"] = dict(enumerate(label_names))
                kwargs["label2id"] = {n: i for i, n in enumerate(label_names)}
            if getattr(config, "num_labels", None) != num_labels:
                kwargs["ignore_mismatched_sizes"] = True
    else:
        cls = AutoModelForCausalLM
    try:
        model = cls.from_pretrained(str(src), **kwargs)
    except ValueError as e:
        if "Unrecognized configuration class" in str(e):
            raise ModelError(
                f"model {src}: architecture '{getattr(config, 'model_type', '?')}' is not supported for task {task}"
            ) from e
        raise _wrap_load_error(src, e) from e
    except Exception as e:
        raise _wrap_load_error(src, e) from e
    if task == "causal-lm":
        model.config.use_cache = False
    return model


def set_eager_attention(model) -> None:
    """Eager attention exports to a graph ONNX Runtime's optimizer fuses into Attention ops."""
    try:
        model.set_attn_implementation("eager")
    except Exception:  # older transformers, or models without the switch
        if hasattr(model.config, "_attn_implementation"):
            model.config._attn_implementation = "eager"


def count_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters())


def dir_size(path: Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
