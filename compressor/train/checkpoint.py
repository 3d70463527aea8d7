"""Trainer checkpoints: the training loop's resumable state.

:func:`save_trainer_state` / :func:`load_trainer_state` hold what accelerate saves (weights,
optimizer, scheduler, RNG states, and every callback with ``state_dict`` / ``load_state_dict``), the best weights so
far and the loop's position (``trainer_state.json``). They are written into a temporary folder and swapped in, so a
kill leaves either the old checkpoint or the new one.
"""

from __future__ import annotations

import json
import shutil
from contextlib import nullcontext
from pathlib import Path

from compressor.core.rundir import atomic_write_json, recover_dir, removed_on_error, replace_dir
from compressor.core.writeerrors import writing

TRAINER_STATE = "trainer_state.json"
BEST_WEIGHTS = "best_weights.pt"


def save_trainer_state(accel, checkpoint_dir: Path, what: str, meta: dict, best_state: dict | None) -> None:
    """Every process writes its part (RNG states) into one temporary dir; the main process swaps it in."""
    import torch

    tmp = checkpoint_dir.with_name(f".{checkpoint_dir.name}.tmp")
    with writing(what, checkpoint_dir), removed_on_error(tmp) if accel.is_main_process else nullcontext():
        if accel.is_main_process:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        accel.wait_for_everyone()
        accel.save_state(str(tmp))
        accel.wait_for_everyone()
        if accel.is_main_process:
            if best_state is not None:
                torch.save(best_state, tmp / BEST_WEIGHTS)
            atomic_write_json(tmp / TRAINER_STATE, meta)
            replace_dir(tmp, checkpoint_dir)
    accel.wait_for_everyone()


def load_trainer_state(accel, checkpoint_dir: Path) -> tuple[dict, dict | None] | None:
    """(the loop's position, the best weights or None) from a checkpoint, its accelerate state loaded into ``accel``;
    None when ``checkpoint_dir`` holds no checkpoint."""
    import torch

    recover_dir(checkpoint_dir)  # killed between the two renames of a checkpoint swap
    if not (checkpoint_dir / TRAINER_STATE).is_file():
        return None
    meta = json.loads((checkpoint_dir / TRAINER_STATE).read_text())
    accel.load_state(str(checkpoint_dir))
    best = None
    if (checkpoint_dir / BEST_WEIGHTS).is_file():
        best = torch.load(checkpoint_dir / BEST_WEIGHTS, map_location="cpu", weights_only=True)
    return meta, best
