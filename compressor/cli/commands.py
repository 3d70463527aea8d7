"""Command line: thin wrappers that call one library function each.

Heavy libraries (torch, transformers, onnxruntime) are imported inside the commands, so
``compressor --help`` and ``compressor validate`` stay fast. A user mistake is one red
line on stderr and exit code 2; ``--debug`` shows the traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from compressor.cli.support import STATE, CommandGroup, escape_markup, guarded, print_version

app = typer.Typer(
    cls=CommandGroup,
    add_completion=False,
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    help="Distill, prune, quantize, export and benchmark Hugging Face models from one YAML recipe.\n\n"
    "Start with:  compressor validate recipes/quickstart.yaml  then  compressor run recipes/quickstart.yaml",
)
@app.callback()
def main_options(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks before the one-line errors "
                                            "(also accepted after the command; exit codes stay the same)."),
                 version: bool = typer.Option(False, "--version", is_eager=True, callback=print_version,
                                              help="Print the version and exit.")):
    STATE["debug"] = debug


SetOpt = typer.Option(None, "--set", "-s", metavar="KEY=VALUE",
                      help="Override a recipe field, e.g. --set stages.0.finetune.epochs=1 (repeatable).")


@app.command()
@guarded
def validate(recipe: Path = typer.Argument(..., help="Recipe YAML file."), set_: Optional[list[str]] = SetOpt):
    """Check a recipe without running it: schema, types, ranges, with file:line errors."""
    from compressor.recipe import load_recipe
    from compressor.recipe.paths import check_paths

    r, _ = load_recipe(recipe, set_ or [])
    for note in check_paths(r, recipe.absolute().parent, models_must_exist=False):
        _warn(note)
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
    rerun_changed: bool = typer.Option(False, "--rerun-changed",
                                       help="With --resume: when a data file, the model or another input changed since "
                                            "the run started, run again the stages that read it (default: refuse)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing run directory."),
    output: Optional[str] = typer.Option(None, "--output", "-o", help="Parent folder of the run directory (default: recipe's output.dir)."),
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

    run_dir = run_pipeline(recipe, set_ or [], force=force, output_dir=output, quiet=quiet, resume=resume,
                           rerun_changed=rerun_changed)
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
    allow_incomplete: bool = typer.Option(False, "--allow-incomplete",
                                          help="Include runs whose status is not 'complete' (flagged in the report)."),
):
    """Put several runs in one table and on one accuracy-vs-size / latency chart.

    Runs measured on different hardware are flagged: their latencies are not comparable.
    """
    from compressor.report.compare import compare as compare_runs
    from compressor.report.terminal import compare_summary, print_summary

    cmp = compare_runs(runs, output, allow_incomplete)
    for note in cmp.notes:
        _warn(note)
    print_summary("compare", *compare_summary(cmp.head, cmp.rows))
    typer.echo(f"report: {cmp.files['md']} and {cmp.files['html'].name}")


# ---------------------------------------------------------------- standalone commands
TASKS = ("auto", "sequence-classification", "causal-lm")
TaskOpt = typer.Option("auto", "--task", help="sequence-classification | causal-lm | auto (from config.json / the graph).")
PARITY_SAMPLES, PARITY_BATCH = 64, 16  # `compressor export` checks its graphs on these (see export/samples.py)


def _warn(message: str) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold yellow]warning:[/] {escape_markup(message)}", markup=True)


def _quiet_transformers() -> None:
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _task_of(config, where: Path, task: str) -> str:
    from compressor.core.errors import ModelError

    if task != "auto":
        if task not in TASKS:
            raise ModelError(f"--task {task}: choose one of {', '.join(TASKS)}")
        return task
    archs = list(getattr(config, "architectures", None) or [])
    if any(a.endswith("ForSequenceClassification") for a in archs):
        return "sequence-classification"
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return "causal-lm"
    raise ModelError(f"model {where}: architecture {archs or getattr(config, 'model_type', '?')} is neither a sequence "
                     "classifier nor a causal LM; pass --task")


def _model_dir(path: Path, onnx_too: bool = False) -> Path:
    from compressor.core.errors import ModelError

    if not path.exists():
        raise ModelError(f"{path}: no such file or directory")
    if not path.is_dir():
        raise ModelError(f"{path}: is a file, not a model directory: give a Hugging Face model directory (config.json, "
                         "weights, tokenizer)" + (" or an .onnx file" if onnx_too else ""))
    if not (path / "config.json").is_file():
        raise ModelError(f"{path}: not a Hugging Face model directory (no config.json)")
    return path


def _onnx_file(path: Path) -> Path:
    """An existing file that really holds an ONNX model (checked before anything else is looked for)."""
    from compressor.core.errors import ModelError

    if not path.is_file():
        raise ModelError(f"{path}: no such ONNX file" + (" (it is a directory)" if path.is_dir() else ""))
    _readable_onnx(path)
    return path


def _companion(artifact: Path, explicit: Optional[Path]) -> Optional[Path]:
    """The folder with the tokenizer (and config.json) that belongs to an ONNX file."""
    from compressor.models import TOKENIZER_FILES

    if explicit is not None:
        return explicit
    for d in (artifact.parent, artifact.parent.parent / "model", artifact.parent.parent):
        if d.is_dir() and any((d / f).is_file() for f in TOKENIZER_FILES):
            return d
    return None


def _ints(text: str, what: str) -> list[int]:
    from compressor.core.errors import CompressorError

    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise CompressorError(f"{what} {text!r}: give positive integers separated by commas, e.g. 1,8")
    return values


@app.command()
@guarded
def export(
    model_dir: Path = typer.Argument(..., help="Hugging Face model directory (config.json, weights, tokenizer)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Folder for the ONNX files (default: MODEL_DIR/onnx)."),
    int8: bool = typer.Option(False, "--int8", help="Also write model.int8.onnx (ONNX Runtime dynamic INT8)."),
    opset: int = typer.Option(17, "--opset", min=11, max=23, help="ONNX opset (the dynamo exporter uses at least 18)."),
    tolerance: float = typer.Option(1e-3, "--tolerance", min=0.0, help="Largest |ONNX - PyTorch| logit difference accepted."),
    optimize: bool = typer.Option(True, "--optimize/--no-optimize", help="ONNX Runtime transformer fusions (model.opt.onnx)."),
    cls_only: bool = typer.Option(True, "--cls-only-last-layer/--full-last-layer",
                                  help="In model.opt.onnx of a classifier that reads the [CLS] token, compute the last "
                                       "layer for that token only (exact; parity-checked)."),
    exporter: str = typer.Option("auto", "--exporter", help="auto | torchscript | dynamo."),
    task: str = TaskOpt,
    force: bool = typer.Option(False, "--force", help="Replace ONNX files already in the output folder."),
):
    """Export a model directory to ONNX, checked against PyTorch on tokenized sample sentences.

    Writes model.onnx (+ model.opt.onnx with fusions, + model.int8.onnx with --int8), each with a
    .json provenance record holding the parity result, plus the tokenizer and config.
    """
    from compressor.core.errors import CompressorError, RunDirError
    from compressor.core.rundir import ensure_replaceable
    from compressor.models import load_config, load_model, load_tokenizer, save_tokenizer
    from compressor.onnx.onnx import parity, write_provenance
    from compressor.onnx.stage import export_fp32
    from compressor.quantize.cpu_graph import tune_layernorm
    from compressor.quantize.ptq import quantize_dynamic_file
    from compressor.recipe.schema import DynamicQuant, ExportStage

    if exporter not in ("auto", "torchscript", "dynamo"):
        raise CompressorError(f"--exporter {exporter}: choose auto, torchscript or dynamo")
    _quiet_transformers()
    model_dir = _model_dir(model_dir)
    out = output if output is not None else model_dir / "onnx"
    names = ("model.onnx", "model.onnx.data", "model.opt.onnx", "model.int8.onnx")
    if out.resolve() != model_dir.resolve():  # ONNX files next to the model's own files: the user asked for that
        ensure_replaceable(out, names + tuple(f"{n}.json" for n in names), "an export folder",
                           "choose an empty or new -o folder")
    existing = [out / n for n in names if (out / n).exists()]
    if existing and not force:
        raise RunDirError(f"{existing[0]}: already exists; use --force to replace it")
    config = load_config(model_dir)
    task = _task_of(config, model_dir, task)
    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir, task)
    out.mkdir(parents=True, exist_ok=True)
    for n in names:
        for f in (out / n, out / f"{n}.json"):
            f.unlink(missing_ok=True)
    batches = _parity_batches(tokenizer, task, model.config)
    source = {"source": str(model_dir.resolve()), "task": task,
              "parity_inputs": f"{PARITY_SAMPLES} sample sentences in padded batches of {PARITY_BATCH}"}
    fp32 = out / "model.onnx"
    cfg = ExportStage(opset=opset, tolerance=tolerance, exporter=exporter, optimize=optimize, cls_only_last_layer=cls_only)
    record, opt = export_fp32(model, batches, fp32, cfg, "onnx", source)
    check = record["parity"]
    typer.echo(f"{fp32}: {record['exporter']} exporter, opset {record['opset']}, inputs {', '.join(record['inputs'])}; "
               f"parity max |diff| {check['max_abs_diff']:.2e} (tolerance {tolerance:g}), "
               f"{_agreement(check, task)}")
    best = fp32
    if opt is not None:
        best = opt["path"]
        typer.echo(f"{best}: fusions {', '.join(f'{k}×{v}' for k, v in opt['fusions'].items()) or 'none'}; "
                   f"parity max |diff| {opt['parity']['max_abs_diff']:.2e}"
                   + ("; last layer for [CLS] only" if opt["cls_only_last_layer"]["applied"] else ""))
    elif optimize:
        why = record.get("fused_rejected") or (record.get("fusion") or {}).get("reason")
        typer.echo(f"{fp32.name}: no ONNX Runtime fusions for model type '{getattr(model.config, 'model_type', '?')}'"
                   + (f" ({why})" if why else "") + "; the plain graph is used")
    if int8:
        q = out / "model.int8.onnx"
        qcfg = DynamicQuant()
        quantize_dynamic_file(best, q, qcfg)
        kernels = tune_layernorm(q, qcfg.layernorm)
        check_q = parity(model, q, batches, None, what="INT8")
        write_provenance(q, {"artifact": "int8", **source, "source_graph": best.name, "scheme": "dynamic",
                             "weight_type": "int8", "per_channel": qcfg.per_channel, "layernorm_kernels": kernels,
                             "parity": check_q})
        typer.echo(f"{q}: dynamic INT8 of {best.name}; max |diff| {check_q['max_abs_diff']:.2e}, "
                   f"{_agreement(check_q, task)}")
        typer.echo(f"  agreement = the share of the {PARITY_SAMPLES} sample sentences (a few words to {PARITY_MAX_LENGTH} "
                   f"tokens, padded in batches of {PARITY_BATCH}) whose "
                   + ("predicted class" if task == "sequence-classification" else "next-token prediction, at every real "
                      "token,") + " is the same in INT8 as in fp32 PyTorch. It is not accuracy (the sentences have no "
                   "labels): `compressor eval MODEL.int8.onnx --data FILE` measures that on your data")
    if out.resolve() != model_dir.resolve():  # the folder stands on its own: eval / bench find the tokenizer there
        save_tokenizer(tokenizer, out)
        model.config.save_pretrained(out)


PARITY_MAX_LENGTH = 128


def _parity_batches(tokenizer, task: str, config) -> list[dict]:
    """The sample sentences, tokenized in batches of PARITY_BATCH (padded, the longest truncated)."""
    from compressor.onnx.samples import sample_texts

    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or PARITY_MAX_LENGTH
    texts = sample_texts(PARITY_SAMPLES)
    batches = []
    for i in range(0, len(texts), PARITY_BATCH):
        enc = tokenizer(texts[i:i + PARITY_BATCH], padding=True, truncation=True, max_length=min(PARITY_MAX_LENGTH, limit),
                        return_tensors="pt")
        if task == "causal-lm":  # LM batches carry ids and mask only (GPT-2 would embed token_type_ids with its word table)
            enc = {k: v for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        batches.append(dict(enc))
    return batches


def _agreement(check: dict, task: str) -> str:
    unit = "sentences" if task == "sequence-classification" else "tokens"
    n = check.get("compared") or 0
    return f"argmax agreement {round(check['argmax_agreement'] * n)}/{n} {unit} ({check['argmax_agreement']:.1%})"


@app.command("eval")
@guarded
def eval_cmd(
    artifact: Path = typer.Argument(..., help="Hugging Face model directory, or an .onnx file."),
    data: str = typer.Option(..., "--data", metavar="FILE", help="csv / tsv / txt / jsonl / parquet table, a Hugging Face "
                             "datasets folder or hf:NAME[:CONFIG], or a .txt file for a causal LM; a path or "
                             "pkg://<package>/<path>."),
    text: str = typer.Option("text", "--text", help="Text column: a name or a 0-based position (two, comma-separated, "
                             "for sentence pairs)."),
    label: str = typer.Option("label", "--label", help="Label column (classifiers): a name or a 0-based position."),
    sep: Optional[str] = typer.Option(None, "--sep", help="The one character between columns (default: the format's "
                                      "own, or sniffed), as data.sep."),
    header: bool = typer.Option(True, "--header/--no-header", help="--no-header: the first row is data (give columns "
                                "by position, or name them with --columns), as data.header."),
    columns: Optional[str] = typer.Option(None, "--columns", help="Names for the columns of a headerless file, "
                                          "comma-separated, as data.columns."),
    labels: Optional[str] = typer.Option(None, "--labels", help="Label names in id order, comma-separated "
                                         "(default: the model's id2label)."),
    task: str = TaskOpt,
    tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", help="Folder with the tokenizer (for an .onnx file; "
                                             "default: next to it, or ../model)."),
    max_length: int = typer.Option(128, "--max-length", min=8, help="Tokens per example (causal LM: block length)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="Evaluate this many random rows (blocks) only."),
    data_format: str = typer.Option("auto", "--format", help="auto | csv | tsv | jsonl | parquet | text."),
    encoding: str = typer.Option("utf-8", "--encoding", help="Text encoding of the data file, e.g. latin-1."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="ONNX Runtime intra-op threads."),
    json_out: Optional[Path] = typer.Option(None, "--json", metavar="FILE", help="Also write the metrics as JSON."),
    quoting: str = typer.Option("auto", "--quoting", help="csv / tsv quoting: auto | csv (honour \"...\" fields) | none "
                                "(quotes are plain text); as data.quoting."),
    dedupe: bool = typer.Option(True, "--dedupe/--no-dedupe", help="Drop repeated texts, as a run does with its evaluation "
                                "files (split.dedupe)."),
    conflicts: str = typer.Option("keep-first", "--conflicts", help="A repeated text with different labels: keep-first | "
                                  "majority | drop (split.conflicts)."),
):
    """Evaluate a model directory or an ONNX file on a data file, with the same code `compressor run` uses."""
    from compressor.core.errors import CompressorError
    from compressor.core.progress import console_log

    try:
        with console_log():
            _eval(artifact, data, text, label, labels, task, tokenizer, max_length, batch_size, limit, threads, json_out,
                  dict(format=data_format, encoding=encoding, quoting=quoting, sep=sep, header=header, columns=columns,
                       dedupe=dedupe, conflicts=conflicts, max_length=max_length, limit=limit))
    except CompressorError as e:  # the data layer names recipe keys; here they are options
        from compressor.measure.eval_file import as_options

        raise type(e)(as_options(str(e))) from None


def _eval(artifact, data, text, label, labels, task, tokenizer, max_length, batch_size, limit, threads, json_out, layout):
    from compressor import data as D
    from compressor.core.errors import ModelError
    from compressor.core.rundir import atomic_write_json
    from compressor.measure import eval_file as E
    from compressor.measure.evaluate import evaluate_onnx, evaluate_torch
    from compressor.models import load_config, load_model, load_tokenizer, resolve

    _quiet_transformers()
    is_onnx = artifact.suffix.lower() == ".onnx"
    if is_onnx:
        _onnx_file(artifact)
    # a path (from here), pkg://<package>/<path>, or a Hub dataset (hf:NAME)
    data_path = data if data.startswith("hf:") else str(resolve(data, None, "--data"))
    home = _companion(artifact, tokenizer) if is_onnx else _model_dir(artifact, onnx_too=True)
    if home is None:
        raise ModelError(f"{artifact}: no tokenizer next to it (looked in {artifact.parent} and ../model); pass --tokenizer DIR")
    config = load_config(home) if (home / "config.json").is_file() else None
    if config is not None:
        task = _task_of(config, home, task)
    elif task == "auto":  # an ONNX file without config.json: a classifier's logits are (batch, labels)
        from compressor.onnx.session import make_session

        task = "causal-lm" if len(make_session(artifact).get_outputs()[0].shape) == 3 else "sequence-classification"
    tok = load_tokenizer(home)
    classify = task == "sequence-classification"
    cfg = E.data_config(data_path, text=text, label=label if classify else None, **layout)  # options checked first
    if classify:
        names, warning = E.label_names(config, cfg, labels)
        if warning:
            _warn(warning)
        cfg = E.data_config(data_path, text=text, label=label, names=names, **layout)
    ds, n_labels = None, None
    if classify:
        num_labels = getattr(config, "num_labels", None) if config is not None else None
        encoded, ds = E.load_classification_file(cfg, num_labels, tok, max_length)
        n_labels = len(ds.label_names or []) or None
    else:
        blocks = D.load_causal_lm(cfg, None, tok, seed=0)["train"]
        encoded = D.encode_blocks(blocks)
    loader = D.make_loader(encoded, tok, batch_size, shuffle=False, task=task)
    model = None
    if is_onnx:
        metrics = evaluate_onnx(artifact, loader, task, threads, detail=True, progress=f"eval {artifact.name}",
                                intervals=True, num_labels=n_labels)
    else:
        model = load_model(home, task)
        metrics = evaluate_torch(model, loader, task, detail=True, progress=f"eval {artifact.name}", intervals=True)
    metrics.pop("_rows", None)
    if not classify:
        E.lm_extras(metrics, blocks, getattr(config, "vocab_size", None), model, tok)
    shown = ", ".join((f"{k} {v:.4f}" + (f" [95 % CI {metrics[k + '_ci'][0]:.4f}, {metrics[k + '_ci'][1]:.4f}]"
                                          if k + "_ci" in metrics else "")) if isinstance(v, float) else f"{k} {v}"
                      for k, v in metrics.items()
                      if isinstance(v, (int, float)) and k not in ("missed_share", "majority_class"))
    typer.echo(f"{artifact} on {data} ({len(encoded)} {'examples' if classify else 'blocks'}): {shown}")
    facts, warnings = E.health_lines(metrics, task, ds.label_names if ds else None)
    for line in facts:
        typer.echo(f"  {line}")
    for line in warnings:
        _warn(line)
    if json_out is not None:
        atomic_write_json(json_out, {"artifact": str(artifact), "data": str(data), "task": task, "metrics": metrics,
                                     "warnings": warnings, **({"data_rows": E.data_summary(ds)} if ds else {})})


def _readable_onnx(path: Path) -> None:
    """A ModelError (one line) for a file that is no ONNX model (truncated, corrupt, another format)."""
    import onnx

    from compressor.core.errors import ModelError

    try:
        onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError, OSError, ...
        raise ModelError(f"{path}: not a readable ONNX model ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def _onnx_vocab(path: Path, home: Optional[Path]) -> Optional[int]:
    """The vocabulary size for synthetic inputs: config.json beside the file, else the word-embedding table."""
    if home is not None and (home / "config.json").is_file():
        import json

        cfg = json.loads((home / "config.json").read_text())
        if cfg.get("vocab_size"):
            return int(cfg["vocab_size"])
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name: list(i.dims) for i in graph.initializer}
    for node in graph.node:  # the table that input_ids index into
        if "input_ids" in node.input:
            data = node.input[2] if node.op_type == "EmbedLayerNormalization" else node.input[0]
            if len(inits.get(data, [])) == 2 and data != "input_ids":
                return int(inits[data][0])
    for name, dims in inits.items():
        if len(dims) == 2 and any(w in name for w in ("word_embeddings", "wte", "embed_tokens")):
            return int(dims[0])
    return None


@app.command()
@guarded
def bench(
    artifacts: list[Path] = typer.Argument(..., metavar="ARTIFACT...", help="Model directories and / or .onnx files."),
    batch_sizes: str = typer.Option("1,8", "--batch-sizes", help="Comma-separated batch sizes."),
    seq_lengths: str = typer.Option("128", "--seq-lengths", help="Comma-separated sequence lengths."),
    iterations: int = typer.Option(30, "--iterations", min=1, help="Timed runs per shape."),
    warmup: int = typer.Option(5, "--warmup", min=0, help="Untimed runs per shape first."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Intra-op threads (default: all cores)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda."),
    rounds: int = typer.Option(5, "--rounds", "--repeat", min=1,
                               help="Interleaved rounds: every artifact is timed once per round; ratios are claimed only "
                                    "when the rounds agree. More rounds: a steadier verdict on a busy machine."),
    json_out: Optional[Path] = typer.Option(None, "--json", metavar="FILE", help="Also write the rows as JSON."),
    prompt: int = typer.Option(0, "--prompt", min=0, help="Causal LMs: time generation instead, from a prompt of this "
                               "many tokens (prefill ms); ONNX files must be cached graphs (export with_past)."),
    new_tokens: int = typer.Option(0, "--new-tokens", min=0, help="Causal LMs: tokens generated after the prompt, greedy "
                                   "with the KV cache (decode tokens/s); --iterations then counts whole generations."),
):
    """Latency and throughput of models / ONNX files on synthetic batches.

    All artifacts are timed in one separate process with the same threads and passive waiting for PyTorch and
    ONNX Runtime, in interleaved rounds; the table compares each with the first artifact.
    """
    from compressor.core.errors import CompressorError, ModelError
    from compressor.core.rundir import atomic_write_json
    from compressor.measure.bench.runner import busy_note, cuda_available, fingerprint
    from compressor.measure.bench.worker import thread_policy, time_artifacts
    from compressor.models import load_config
    from compressor.report.terminal import bench_summary, print_summary

    bs, sl = _ints(batch_sizes, "--batch-sizes"), _ints(seq_lengths, "--seq-lengths")
    if device not in ("cpu", "cuda"):
        raise CompressorError(f"--device {device}: choose cpu or cuda")
    if device == "cuda" and not cuda_available():
        raise CompressorError("--device cuda: no CUDA GPU is visible")
    _quiet_transformers()
    plan = []  # check every artifact before measuring any
    for a in artifacts:
        if a.suffix.lower() == ".onnx":
            _onnx_file(a)
            home = _companion(a, None)
            config = load_config(home) if home is not None and (home / "config.json").is_file() else None
        else:
            home = _model_dir(a, onnx_too=True)
            config = load_config(home)
        limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        if limit and max(sl) > limit:
            raise CompressorError(f"{a}: --seq-lengths {max(sl)} is longer than the model's {limit} positions")
        plan.append((a, home, config))
    if prompt or new_tokens:
        return _bench_generation(plan, prompt or 128, new_tokens or 64, bs, warmup, iterations, threads, device, json_out)
    notes = [n for n in (busy_note(),) if n]
    targets = []
    for a, home, config in plan:
        if any(t["name"] == str(a) for t in targets):
            continue  # named twice: timed once
        if a.suffix.lower() == ".onnx":
            vocab = _onnx_vocab(a, home)
            if vocab is None:
                notes.append(f"{a}: vocabulary size unknown; synthetic token ids below 100")
            targets.append({"name": str(a), "kind": "onnx", "path": str(a), "device": device, "vocab": vocab or 100})
        else:
            task = _task_of(config, home, "auto")
            targets.append({"name": str(a), "kind": "torch", "path": str(home), "device": device, "task": task,
                            "vocab": config.vocab_size})
    from compressor.core.progress import console_log

    with console_log():  # the timing process's progress (rounds done) on stderr
        got = time_artifacts(targets, bs, sl, warmup, iterations, rounds, threads)
    rows = []
    for t in targets:
        for r in got.get(t["name"], []):
            if "error" in r:
                raise ModelError(f"{t['name']}: cannot be timed: {r['error']}")
            rows.append({"artifact": t["name"], **r})
    fp = fingerprint()
    policy = thread_policy(threads)
    print_summary(f"bench: {iterations} timed runs per shape in {min(rounds, iterations)} interleaved rounds, "
                  f"{warmup} warm-up", *bench_summary(rows, [str(a) for a in artifacts]))
    typer.echo(f"measured on {fp['cpu']}, {fp['cores']} cores ({', '.join(fp['cpu_flags']) or 'no AVX2/VNNI'})"
               + (f", GPU {fp['gpu']}" if fp.get("gpu") else "") + f"; {policy['threads']} threads, passive waiting "
               "for every runtime")
    for n in notes:
        _warn(n)
    if json_out is not None:
        atomic_write_json(json_out, {"fingerprint": fp, "timing_policy": policy,
                                     "settings": {"batch_sizes": bs, "seq_lengths": sl, "iterations": iterations,
                                                  "rounds": rounds, "warmup": warmup, "threads": threads, "device": device},
                                     "notes": notes, "rows": rows})


def _bench_generation(plan, prompt, new_tokens, bs, warmup, repeats, threads, device, json_out) -> None:
    from compressor.core.rundir import atomic_write_json
    from compressor.measure.bench.decode import generation_rows
    from compressor.measure.bench.runner import fingerprint
    from compressor.report.markdown import print_rows

    rows = generation_rows(plan, prompt, new_tokens, bs, warmup, repeats, threads, device)
    head = ["artifact", "runtime", "batch", "prompt", "new tokens", "prefill ms", "decode ms/token", "decode tokens/s"]
    table = [[r["artifact"], r["runtime"], str(r["batch"]), str(r["prompt"]), str(r["new_tokens"]), f"{r['prefill_ms']:.2f}",
              f"{r['decode_ms_per_token']:.2f}", f"{r['decode_tokens_per_s']:.1f}"] for r in rows]
    print_rows(f"generation: medians of {repeats} after {warmup} warm-up, greedy, KV cache", head, table)
    if json_out is not None:
        atomic_write_json(json_out, {"fingerprint": fingerprint(), "settings": {"prompt": prompt, "new_tokens": new_tokens,
                                     "batch_sizes": bs, "repeats": repeats, "warmup": warmup, "threads": threads}, "rows": rows})


@app.command()
@guarded
def plan(recipe: Path = typer.Argument(..., help="Recipe YAML file."), set_: Optional[list[str]] = SetOpt):
    """Say what each stage of a recipe can buy on this machine (smaller? faster?), without loading the model."""
    from compressor.plan import describe_machine, machine_info, make_plan
    from compressor.recipe import load_recipe
    from compressor.recipe.paths import check_paths
    from compressor.report.markdown import print_rows

    r, _ = load_recipe(recipe, set_ or [])
    for note in check_paths(r, recipe.absolute().parent, models_must_exist=False):
        _warn(note)
    machine = machine_info()
    rows = make_plan(r, recipe.absolute().parent, machine)
    typer.echo(f"{recipe}: '{r.name}', {r.model.task}, model {r.model.path}")
    typer.echo(f"machine: {describe_machine(machine)}")
    print_rows("what each stage buys here", ["stage", "verdict", "why"], [[a.stage, a.verdict, a.why] for a in rows],
               left=("stage", "verdict", "why"))


@app.command()
def version():
    """Print the version."""
    from compressor import __version__

    typer.echo(__version__)


def main() -> None:
    app()
