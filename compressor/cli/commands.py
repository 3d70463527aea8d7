"""Command line: thin commands that each call one library function.

The recipe commands are here; the standalone ones (export, eval, bench) in export_cmd.py, eval_cmd.py and
bench_cmd.py, registered below in the order ``--help`` lists them. Heavy libraries (torch, transformers,
onnxruntime) are imported inside the commands, so ``compressor --help`` and ``compressor validate`` stay fast. A user
mistake is one red line on stderr and exit code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from compressor.cli.bench_cmd import bench
from compressor.cli.eval_cmd import eval_cmd
from compressor.cli.export_cmd import export
from compressor.cli.support import STATE, CommandGroup, guarded, print_version, warn

app = typer.Typer(
    cls=CommandGroup,
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Distill, prune, quantize, export and benchmark Hugging Face models from one YAML recipe.\n\n"
    "Start with:  compressor validate recipes/quickstart.yaml  then  compressor run recipes/quickstart.yaml",
)


@app.callback()
def main_options(
    debug: bool = typer.Option(
        False,
        "--debug",
        help="Show full tracebacks before the one-line errors (also accepted after the command; exit codes stay the same).",
    ),
    version: bool = typer.Option(False, "--version", is_eager=True, callback=print_version, help="Print the version and exit."),
):
    STATE["debug"] = debug


SetOpt = typer.Option(
    None, "--set", "-s", metavar="KEY=VALUE", help="Override a recipe field, e.g. --set stages.0.finetune.epochs=1 (repeatable)."
)


def _checked(recipe: Path, overrides: list[str]):
    """The recipe, through every check that reads no weights (see compressor.recipe.check_recipe); warnings shown."""
    from compressor.recipe import check_recipe

    r, notes = check_recipe(recipe, overrides)
    for note in notes:
        warn(note)
    return r


@app.command()
@guarded
def validate(recipe: Path = typer.Argument(..., help="Recipe YAML file."), set_: Optional[list[str]] = SetOpt):
    """Check a recipe without running it: schema, types, ranges, stage order and what the stages ask of the model
    (its config.json only), with file:line errors."""
    r = _checked(recipe, set_ or [])
    stages = " → ".join(k for k, _ in r.stage_list()) or "no stages (evaluate and benchmark only)"
    typer.echo(f"{recipe}: OK: '{r.name}', {r.model.task}, stages: {stages}")


@app.command()
@guarded
def run(
    recipe: Optional[Path] = typer.Argument(None, help="Recipe YAML file (not needed with --resume)."),
    resume: Optional[Path] = typer.Option(
        None,
        "--resume",
        metavar="RUN_DIR",
        help="Continue an interrupted run: completed stages are skipped, the interrupted one continues from its last checkpoint.",
    ),
    set_: Optional[list[str]] = SetOpt,
    rerun_changed: bool = typer.Option(
        False,
        "--rerun-changed",
        help="With --resume: when a data file, the model or another input changed since "
        "the run started, run again the stages that read it (default: refuse).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing run directory."),
    output: Optional[str] = typer.Option(
        None, "--output", "-o", help="Parent folder of the run directory (default: recipe's output.dir)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and the final table."),
):
    """Run a recipe: stages (finetune, distill, prune, export, quantize), then evaluation, benchmark and report.

    Writes runs/<name>/ with recipe.yaml, model/, onnx/, metrics.json, report.md, report.html, log.txt, status.
    Runs that compress a model also measure the uncompressed one (the "baseline") for the report.
    """
    import os

    from compressor.core.records import read_metrics
    from compressor.pipeline.orchestrate import run as run_pipeline
    from compressor.report.markdown import print_table

    run_dir = run_pipeline(
        recipe, set_ or [], force=force, output_dir=output, quiet=quiet, resume=resume, rerun_changed=rerun_changed
    )
    if os.environ.get("RANK", "0") != "0":
        return  # under `accelerate launch`, the main process reports
    print_table(read_metrics(run_dir / "metrics.json"))
    typer.echo(f"report: {run_dir / 'report.md'} and report.html")


@app.command()
@guarded
def status(runs: list[Path] = typer.Argument(..., metavar="RUN_DIR...", help="Run directories.")):
    """Say where runs stand: complete, running (by which process), failed, or interrupted (its process is gone)."""
    from compressor.core.errors import RunDirError
    from compressor.core.rundir import STATUS, describe_status

    for r in runs:
        if not (r / STATUS).is_file():
            raise RunDirError(f"{r}: not a run directory (no {STATUS} file)")
        typer.echo(f"{r}: {describe_status(r)}")


# ---------------------------------------------------------------- reports
@app.command()
@guarded
def compare(
    runs: list[Path] = typer.Argument(..., metavar="RUN_DIR...", help="Run directories (each with metrics.json and status)."),
    output: Path = typer.Option(Path("compare"), "--output", "-o", help="Folder for compare.md / compare.html / plots."),
    allow_incomplete: bool = typer.Option(
        False, "--allow-incomplete", help="Include runs whose status is not 'complete' (flagged in the report)."
    ),
):
    """Put several runs in one table and on one accuracy-vs-size / latency chart.

    Runs measured on different hardware are flagged: their latencies are not comparable.
    """
    from compressor.report.compare import compare as compare_runs
    from compressor.report.terminal import compare_summary, print_summary

    cmp = compare_runs(runs, output, allow_incomplete)
    for note in cmp.notes:
        warn(note)
    print_summary("compare", *compare_summary(cmp.head, cmp.rows))
    typer.echo(f"report: {cmp.files['md']} and {cmp.files['html'].name}")


app.command()(export)
app.command("eval")(eval_cmd)
app.command()(bench)


@app.command()
@guarded
def plan(recipe: Path = typer.Argument(..., help="Recipe YAML file."), set_: Optional[list[str]] = SetOpt):
    """Say what each stage of a recipe can buy on this machine (smaller? faster?), without loading the model."""
    from compressor.plan import describe_machine, machine_info, make_plan
    from compressor.report.markdown import print_rows

    r = _checked(recipe, set_ or [])
    machine = machine_info()
    rows = make_plan(r, recipe.absolute().parent, machine)
    typer.echo(f"{recipe}: '{r.name}', {r.model.task}, model {r.model.path}")
    typer.echo(f"machine: {describe_machine(machine)}")
    print_rows(
        "what each stage buys here",
        ["stage", "verdict", "why"],
        [[a.stage, a.verdict, a.why] for a in rows],
        left=("stage", "verdict", "why"),
    )


@app.command()
def version():
    """Print the version."""
    from compressor import __version__

    typer.echo(__version__)


def main() -> None:
    app()
