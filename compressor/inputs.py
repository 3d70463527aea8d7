"""What a run read, fingerprinted: the model folder (weights, config, tokenizer), the data files and every other file a
recipe names. Stored in run.json; ``--resume`` compares them, so a stage is never skipped over changed inputs.

A file's fingerprint is its size and SHA-256; past ``FULL_HASH_BYTES`` it is its size, mtime and the SHA-256 of
evenly spaced samples (a multi-gigabyte weight file is not read whole on every resume).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from compressor.errors import CompressorError

FULL_HASH_BYTES = 256 * 2**20
SAMPLES, SAMPLE_BYTES = 64, 64 * 2**10


def file_digest(path: Path) -> str:
    st = path.stat()
    h = hashlib.sha256()
    with path.open("rb") as f:
        if st.st_size <= FULL_HASH_BYTES:
            for chunk in iter(lambda: f.read(2**20), b""):
                h.update(chunk)
            return f"{st.st_size}:sha256:{h.hexdigest()}"
        for i in range(SAMPLES):
            f.seek((st.st_size - SAMPLE_BYTES) * i // (SAMPLES - 1))
            h.update(f.read(SAMPLE_BYTES))
    return f"{st.st_size}:{st.st_mtime_ns}:sampled-sha256:{h.hexdigest()}"


def path_digest(path: Path) -> str:
    """A file's digest, or a model folder's: the files directly in it (config, weights, tokenizer), by name and digest;
    subfolders (an onnx/ export, a run's checkpoints) and hidden files are not what a model is loaded from."""
    if path.is_file():
        return file_digest(path)
    h = hashlib.sha256()
    for p in sorted(q for q in path.iterdir() if q.is_file() and not q.name.startswith(".")):
        h.update(f"{p.name}\0{file_digest(p)}\n".encode())
    return f"dir:sha256:{h.hexdigest()}"


def named_paths(recipe) -> dict[str, str]:
    """Recipe field -> the path it names, for every input a run reads."""
    out = {"model.path": recipe.model.path}
    for name in ("train", "dev", "test", "calibration"):
        if getattr(recipe.data, name):
            out[f"data.{name}"] = getattr(recipe.data, name)
    for i, (kind, cfg) in enumerate(recipe.stage_list()):
        at = f"stages.{i}.{kind}"
        if kind == "distill":
            if cfg.teacher:
                out[f"{at}.teacher"] = cfg.teacher
            if cfg.student.path:
                out[f"{at}.student.path"] = cfg.student.path
            if cfg.transfer is not None:
                out[f"{at}.transfer.path"] = cfg.transfer.path
        for j, extra in enumerate(getattr(cfg, "extra_texts", None) or []):
            out[f"{at}.extra_texts.{j}"] = extra
    return out


def fingerprint(recipe, recipe_dir: Path) -> dict[str, dict[str, Any]]:
    """Recipe field -> {"path", "digest"} ("digest": None for a Hub id or a path that is missing now)."""
    from compressor.models import resolve

    out: dict[str, dict[str, Any]] = {}
    for field, spec in named_paths(recipe).items():
        try:
            path = resolve(spec, recipe_dir, field, must_exist=False)
        except CompressorError:
            out[field] = {"path": spec, "digest": None}
            continue
        if isinstance(path, str):  # a Hub id: its revision is part of the recipe
            out[field] = {"path": spec, "digest": None}
        else:
            out[field] = {"path": str(path), "digest": path_digest(Path(path))}
    return out


def changed_inputs(old: dict, new: dict) -> list[str]:
    """Fields whose file changed (content, or which file the field resolves to), in recipe order."""
    return [f for f in new if f in old and (old[f].get("digest"), old[f].get("path")) != (new[f]["digest"], new[f]["path"])]


def digests_for(inputs: dict, prefix: str | None) -> list:
    """The digests a stage hash covers: the run-wide inputs (model, data) for prefix None, else one stage's own."""
    if prefix is None:
        return sorted((f, v["digest"]) for f, v in inputs.items() if not f.startswith("stages."))
    return sorted((f, v["digest"]) for f, v in inputs.items() if f.startswith(prefix + "."))


def recipe_differences(a: Any, b: Any, at: str = "") -> list[str]:
    """Dotted keys where two recipe trees differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in list(a) + [k for k in b if k not in a]:
            out += recipe_differences(a.get(k), b.get(k), f"{at}.{k}" if at else str(k))
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in recipe_differences(x, y, f"{at}.{i}" if at else str(i))]
    return [] if a == b else [at or "(top)"]
