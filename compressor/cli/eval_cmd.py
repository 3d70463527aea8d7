"""``compressor eval``: the options, one call to :func:`compressor.measure.file_eval.evaluate_file`, the lines it prints."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from compressor.cli.support import TaskOpt, guarded, quiet_transformers, warn

# the options, declared once here so that the command itself stays short
_ARTIFACT = typer.Argument(..., help="Hugging Face model directory, or an .onnx file.")
_DATA = typer.Option(
    ...,
    "--data",
    metavar="FILE",
    help="csv / tsv / txt / jsonl / parquet table, a Hugging Face "
    "datasets folder or hf:NAME[:CONFIG], or a .txt file for a causal LM; a path or "
    "pkg://<package>/<path>.",
)
_TEXT = typer.Option(
    "text", "--text", help="Text column: a name or a 0-based position (two, comma-separated, for sentence pairs)."
)
_LABEL = typer.Option("label", "--label", help="Label column (classifiers): a name or a 0-based position.")
_SEP = typer.Option(None, "--sep", help="The one character between columns (default: the format's own, or sniffed), as data.sep.")
_HEADER = typer.Option(
    True,
    "--header/--no-header",
    help="--no-header: the first row is data (give columns by position, or name them with --columns), as data.header.",
)
_COLUMNS = typer.Option(None, "--columns", help="Names for the columns of a headerless file, comma-separated, as data.columns.")
_LABELS = typer.Option(None, "--labels", help="Label names in id order, comma-separated (default: the model's id2label).")
_TOKENIZER = typer.Option(
    None, "--tokenizer", help="Folder with the tokenizer (for an .onnx file; default: next to it, or ../model)."
)
_MAX_LENGTH = typer.Option(128, "--max-length", min=8, help="Tokens per example (causal LM: block length).")
_BATCH_SIZE = typer.Option(64, "--batch-size", min=1)
_LIMIT = typer.Option(None, "--limit", min=1, help="Evaluate this many random rows (blocks) only.")
_DATA_FORMAT = typer.Option("auto", "--format", help="auto | csv | tsv | jsonl | parquet | text.")
_ENCODING = typer.Option("utf-8", "--encoding", help="Text encoding of the data file, e.g. latin-1.")
_THREADS = typer.Option(None, "--threads", min=1, help="ONNX Runtime intra-op threads.")
_JSON_OUT = typer.Option(None, "--json", metavar="FILE", help="Also write the metrics as JSON.")
_QUOTING = typer.Option(
    "auto",
    "--quoting",
    help='csv / tsv quoting: auto | csv (honour "..." fields) | none (quotes are plain text); as data.quoting.',
)
_DEDUPE = typer.Option(
    True, "--dedupe/--no-dedupe", help="Drop repeated texts, as a run does with its evaluation files (split.dedupe)."
)
_CONFLICTS = typer.Option(
    "keep-first", "--conflicts", help="A repeated text with different labels: keep-first | majority | drop (split.conflicts)."
)


@guarded
def eval_cmd(
    artifact: Path = _ARTIFACT,
    data: str = _DATA,
    text: str = _TEXT,
    label: str = _LABEL,
    sep: Optional[str] = _SEP,
    header: bool = _HEADER,
    columns: Optional[str] = _COLUMNS,
    labels: Optional[str] = _LABELS,
    task: str = TaskOpt,
    tokenizer: Optional[Path] = _TOKENIZER,
    max_length: int = _MAX_LENGTH,
    batch_size: int = _BATCH_SIZE,
    limit: Optional[int] = _LIMIT,
    data_format: str = _DATA_FORMAT,
    encoding: str = _ENCODING,
    threads: Optional[int] = _THREADS,
    json_out: Optional[Path] = _JSON_OUT,
    quoting: str = _QUOTING,
    dedupe: bool = _DEDUPE,
    conflicts: str = _CONFLICTS,
):
    """Evaluate a model directory or an ONNX file on a data file, with the same code `compressor run` uses."""
    from compressor.core.errors import CompressorError
    from compressor.core.progress import console_log
    from compressor.measure.eval_file import as_options
    from compressor.measure.file_eval import EvalOptions, evaluate_file

    options = EvalOptions(
        data,
        text,
        label,
        labels,
        task,
        tokenizer,
        max_length,
        batch_size,
        limit,
        data_format,
        encoding,
        threads,
        quoting,
        dedupe,
        conflicts,
        sep,
        header,
        columns,
    )
    try:
        quiet_transformers()
        with console_log():
            _say(artifact, data, evaluate_file(artifact, options), json_out)
    except CompressorError as e:  # the data layer names recipe keys; here they are options
        raise type(e)(as_options(str(e))) from None


def _say(artifact: Path, data: str, done, json_out: Optional[Path]) -> None:
    from compressor.core.rundir import atomic_write_json

    for note in done.notes:
        warn(note)
    metrics = done.metrics
    shown = ", ".join(
        (
            f"{k} {v:.4f}"
            + (f" [95 % CI {metrics[k + '_ci'][0]:.4f}, {metrics[k + '_ci'][1]:.4f}]" if k + "_ci" in metrics else "")
        )
        if isinstance(v, float)
        else f"{k} {v}"
        for k, v in metrics.items()
        if isinstance(v, (int, float)) and k not in ("missed_share", "majority_class")
    )
    unit = "examples" if done.task == "sequence-classification" else "blocks"
    typer.echo(f"{artifact} on {data} ({done.rows} {unit}): {shown}")
    for line in done.facts:
        typer.echo(f"  {line}")
    for line in done.warnings:
        warn(line)
    if json_out is not None:
        atomic_write_json(
            json_out,
            {
                "artifact": str(artifact),
                "data": str(data),
                "task": done.task,
                "metrics": metrics,
                "warnings": done.warnings,
                **({"data_rows": done.data_rows} if done.data_rows is not None else {}),
            },
        )
