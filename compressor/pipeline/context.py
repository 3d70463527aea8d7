"""The explicit state a run passes from stage to stage (no global session)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compressor.recipe.schema import Recipe


@dataclass
class RunContext:
    recipe: Recipe
    recipe_dir: Path
    run_dir: Path
    device: str = "cpu"
    model: Any = None
    tokenizer: Any = None
    baseline: Any = None  # the uncompressed model (teacher, or the model before pruning): measured beside the result
    baseline_tokenizer: Any = None
    baseline_source: str | None = None
    task_trained: bool = True  # False while a classifier's task head is still random (no finetune / distill yet)
    dataset: Any = None  # data.Dataset for classification
    encoded: dict[str, Any] = field(default_factory=dict)  # split -> data.Encoded
    label_names: list[str] | None = None
    artifacts: dict[str, Path] = field(default_factory=dict)  # "onnx" / "int8" / … -> file
    provenance: dict[str, dict] = field(default_factory=dict)  # artifact -> how it was made
    stage_results: list[dict] = field(default_factory=list)
    stage_path: str = ""  # "stages.<i>.<kind>" of the running stage, for error messages
    stage_dir: Path | None = None  # checkpoints/stage-<i>-<kind>/train: the running stage's training state
    resuming: bool = False  # continue the running stage from stage_dir if it holds a checkpoint

    @property
    def task(self) -> str:
        return self.recipe.model.task

    @property
    def seed(self) -> int:
        return self.recipe.seed

    @property
    def primary_metric(self) -> tuple[str, bool]:
        """(name, higher_is_better) of the metric that picks checkpoints and budgets."""
        return ("accuracy", True) if self.task == "sequence-classification" else ("perplexity", False)

    def load_model(self, path):
        """A model for this run's task and labels from ``path`` (a teacher, a student, a snapshot)."""
        from compressor.models import load_model

        m = self.recipe.model
        return load_model(
            path,
            self.task,
            len(self.label_names) if self.label_names else None,
            self.label_names,
            m.trust_remote_code,
            m.revision,
        )

    def encode(self, split: str, tokenizer=None):
        """The ``split`` of the classification data set tokenized by ``tokenizer`` (default: the run's)."""
        from compressor.data import encode_split

        return encode_split(self.dataset.splits[split], tokenizer or self.tokenizer, self.recipe.data.max_length)

    def retokenize(self, tokenizer) -> None:
        """Switch the run to ``tokenizer`` (vocabulary trimming): every split is tokenized again."""
        self.tokenizer = tokenizer
        if self.dataset is not None:
            self.encoded = {name: self.encode(name) for name in self.dataset.splits}

    def loader(self, split: str, batch_size: int, shuffle: bool = False):
        from compressor.data import make_loader

        return make_loader(self.encoded[split], self.tokenizer, batch_size, shuffle, self.seed, self.task)

    def selection_split(self) -> str | None:
        """The split that chooses checkpoints and INT8 budget trials: the validation split held out from the training
        rows (the default), else the dev / test split (``data.split.select_on: dev``)."""
        return "validation" if "validation" in self.encoded else self.eval_split()

    def selection_info(self) -> dict | None:
        """What the report says about how checkpoints were chosen."""
        split = self.selection_split()
        if split is None:
            return None
        sc = self.recipe.data.split
        how = (
            f"{sc.validation * 100:g} % of the training rows held out" + (", stratified" if sc.stratify else "")
            if split == "validation"
            else "the user's evaluation split: its figure is the selection metric"
        )
        return {"split": split, "rows": len(self.encoded[split]), "how": how}

    def eval_split(self) -> str | None:
        for name in ("dev", "test"):
            if name in self.encoded:
                return name
        return None
