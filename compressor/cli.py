"""Command line: thin wrappers that call one library function each.

Heavy libraries (torch, transformers, onnxruntime) are imported inside the commands, so
``compressor --help`` and ``compressor validate`` stay fast. A user mistake is one red
line on stderr and exit code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Callable, Optional

import typer

app = typer.Typer(
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Distill, prune, quantize, export and benchmark Hugging Face models from one YAML recipe.\n\n"
    "Start with:  compressor validate recipes/quickstart.yaml  then  compressor run recipes/quickstart.yaml",
)
_state = {"debug": False}


def _fail(message: str, code: int) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]error:[/] {message}", markup=True)
    raise typer.Exit(code)


def guarded(fn: Callable) -> Callable:
    """Turn CompressorError into one line + exit 2; anything else into one line + exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from compressor.errors import CompressorError

        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except CompressorError as e:
            if _state["debug"]:
                raise
            _fail(_escape(str(e)), e.exit_code)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except Exception as e:
            if _state["debug"]:
                raise
            _fail(_escape(f"internal error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
                          "(run with --debug for the traceback and please report it)"), 1)

    return wrapper


def _escape(s: str) -> str:
    from rich.markup import escape

    return escape(s)


@app.callback()
def main_options(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors.")):
    _state["debug"] = debug


SetOpt = typer.Option(None, "--set", "-s", metavar="KEY=VALUE",
                      help="Override a recipe field, e.g. --set stages.0.finetune.epochs=1 (repeatable).")


@app.command()
@guarded
def validate(recipe: Path = typer.Argument(..., help="Recipe YAML file."), set_: Optional[list[str]] = SetOpt):
    """Check a recipe without running it: schema, types, ranges, with file:line errors."""
    from compressor.recipe import load_recipe

    r, _ = load_recipe(recipe, set_ or [])
    stages = " → ".join(k for k, _ in r.stage_list()) or "no stages (evaluate and benchmark only)"
    typer.echo(f"{recipe}: OK: '{r.name}', {r.model.task}, stages: {stages}")


@app.command()
@guarded
def run(
    recipe: Optional[Path] = typer.Argument(None, help="Recipe YAML file (not needed with --resume)."),
    resume: Optional[Path] = typer.Option(None, "--resume", metavar="RUN_DIR",
                                          help="Continue an interrupted run: completed stages are skipped, the interrupted one "
                                               "continues from its last checkpoint."),
    set_: Optional[list[str]] = SetOpt,
    force: bool = typer.Option(False, "--force", help="Replace an existing run directory."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Parent folder of the run directory (default: recipe's output.dir)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and the final table."),
):
    """Run a recipe: stages (finetune, distill, export, quantize), then evaluation, benchmark and report.

    Writes runs/<name>/ with recipe.yaml, model/, onnx/, metrics.json, report.md, log.txt, status.
    """
    import json

    from compressor.pipeline import run as run_pipeline
    from compressor.report.markdown import print_table

    import os

    run_dir = run_pipeline(recipe, set_ or [], force=force, output_dir=output, quiet=quiet, resume=resume)
    if os.environ.get("RANK", "0") != "0":
        return  # under `accelerate launch`, the main process reports
    print_table(json.loads((run_dir / "metrics.json").read_text()))
    typer.echo(f"report: {run_dir / 'report.md'}")


@app.command()
def version():
    """Print the version."""
    from compressor import __version__

    typer.echo(__version__)


def main() -> None:
    try:
        app()
    except SystemExit as e:
        raise e
    sys.exit(0)
