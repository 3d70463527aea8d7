"""What a run read, fingerprinted: the model folder (weights, config, tokenizer), the data files and every other file a
recipe names. Stored in run.json; ``--resume`` compares them, so a stage is never skipped over changed inputs.

A file's fingerprint is its size and SHA-256; past ``FULL_HASH_BYTES`` it is its size, mtime and the SHA-256 of
evenly spaced samples (a multi-gigabyte weight file is not read whole on every resume).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from compressor.core.errors import CompressorError

log = logging.getLogger("compressor")
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


def path_digest(path: Path, recursive: bool = False) -> str:
    """A file's digest, or a model folder's: the files directly in it (config, weights, tokenizer), by name and digest;
    subfolders (an onnx/ export, a run's checkpoints) and hidden files are not what a model is loaded from.
    ``recursive``: every file below (a Hugging Face dataset folder keeps its splits in subfolders)."""
    if path.is_file():
        return file_digest(path)
    h = hashlib.sha256()
    files = path.rglob("*") if recursive else path.iterdir()
    for p in sorted(q for q in files if q.is_file() and not any(s.startswith(".") for s in q.relative_to(path).parts)):
        h.update(f"{p.relative_to(path).as_posix()}\0{file_digest(p)}\n".encode())
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
            model = field == "model.path" or field.endswith((".teacher", ".student.path"))  # else data: maybe a dataset folder
            out[field] = {"path": str(path), "digest": path_digest(Path(path), recursive=not model)}
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


def check_resume(run_dir: Path, info: dict, recipe, recipe_dir: Path, recipe_path, overrides, rerun_changed: bool):
    """--resume: the recipe given (if any) must be the run's; inputs that changed since the run started are refused
    unless ``rerun_changed``. Returns the inputs' fingerprints to hash stages with (None for a run an older
    compressor started, whose stage hashes cover the config only)."""
    from compressor.core.errors import RecipeError, RunDirError
    from compressor.recipe import load_recipe

    if recipe_path is not None:
        given, _ = load_recipe(recipe_path, overrides)
        diff = recipe_differences(given.model_dump(), recipe.model_dump())
        if diff:
            raise RecipeError(
                f"differs from {run_dir / 'recipe.yaml'} in {', '.join(diff[:8])}"
                f"{f' (and {len(diff) - 8} more)' if len(diff) > 8 else ''}; resume without a recipe to "
                "continue the run as it was, or start a new run with this one",
                str(recipe_path),
            )
    if "inputs" not in info:
        log.info("%s: started by an older compressor; its inputs were not fingerprinted", run_dir)
        return None
    inputs = fingerprint(recipe, recipe_dir)
    changed = changed_inputs(info["inputs"], inputs)
    if changed and not rerun_changed:
        what = ", ".join(f"{f} ({inputs[f]['path']})" for f in changed)
        raise RunDirError(
            f"{run_dir}: {what} changed since the run started; --rerun-changed runs again the stages "
            "that read them, or start a new run"
        )
    for f in changed:
        log.info("%s changed since the run started: the stages that read it run again", f)
    return inputs


STARTED = "started.json"  # in a stage's checkpoint folder: the hash of the stage its training state belongs to


def same_start(stage_dir: Path, digest: str) -> bool:
    """Whether a half-done stage's training state may be continued: it was started with the same config and inputs
    (a stage changed since is trained afresh; its stale state is removed)."""
    started = stage_dir / STARTED
    if not started.is_file() or json.loads(started.read_text()).get("hash") == digest:
        return True
    log.info("%s: config or inputs changed since this stage started: training it afresh", stage_dir.name)
    shutil.rmtree(stage_dir / "train", ignore_errors=True)
    return False
