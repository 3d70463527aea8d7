"""Errors a user can fix. The CLI prints them as one line and exits with code 2."""

from __future__ import annotations


def one_line(text: str) -> str:
    """``text`` with line breaks and other control characters escaped, so an error stays one line."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class CompressorError(Exception):
    """Base class: a problem with the user's input, reported without a traceback."""

    exit_code = 2

    def __str__(self) -> str:  # user text (keys, file names) may hold line breaks: keep the error on one line
        return one_line(super().__str__())


class RecipeError(CompressorError):
    """A recipe that cannot be read or does not validate.

    ``file`` and ``line`` point at the offending place; ``str()`` gives
    ``recipe.yaml:12: stages.1.prune.final_sparsity: must be < 1``.
    """

    def __init__(self, message: str, file: str | None = None, line: int | None = None, field: str | None = None):
        self.message = message
        self.file = file
        self.line = line
        self.field = field
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        field = f"{self.field}: " if self.field else ""
        return one_line(f"{where}{field}{self.message}")


class DataError(CompressorError):
    """A data file that is missing, empty or malformed."""


class ModelError(CompressorError):
    """A model that cannot be found or loaded."""


class ExportError(CompressorError):
    """ONNX export failed or its output disagrees with PyTorch beyond tolerance."""


class RunDirError(CompressorError):
    """The output run directory is in a state we refuse to touch."""


class RecordError(CompressorError):
    """A metrics.json, provenance record or stage record that is unreadable, malformed or of a newer schema."""
