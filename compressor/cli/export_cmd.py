"""``compressor export``: the options, one call to :func:`compressor.onnx.folder.export_folder`, the lines it prints."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from compressor.cli.support import TaskOpt, guarded, quiet_transformers


@guarded
def export(
    model_dir: Path = typer.Argument(..., help="Hugging Face model directory (config.json, weights, tokenizer)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Folder for the ONNX files (default: MODEL_DIR/onnx)."),
    int8: bool = typer.Option(False, "--int8", help="Also write model.int8.onnx (ONNX Runtime dynamic INT8)."),
    opset: int = typer.Option(17, "--opset", min=11, max=23, help="ONNX opset (the dynamo exporter uses at least 18)."),
    tolerance: float = typer.Option(1e-3, "--tolerance", min=0.0, help="Largest |ONNX - PyTorch| logit difference accepted."),
    optimize: bool = typer.Option(True, "--optimize/--no-optimize", help="ONNX Runtime transformer fusions (model.opt.onnx)."),
    cls_only: bool = typer.Option(
        True,
        "--cls-only-last-layer/--full-last-layer",
        help="In model.opt.onnx of a classifier that reads the [CLS] token, compute the last "
        "layer for that token only (exact; parity-checked).",
    ),
    exporter: str = typer.Option("auto", "--exporter", help="auto | torchscript | dynamo."),
    task: str = TaskOpt,
    force: bool = typer.Option(False, "--force", help="Replace ONNX files already in the output folder."),
):
    """Export a model directory to ONNX, checked against PyTorch on tokenized sample sentences.

    Writes model.onnx (+ model.opt.onnx with fusions, + model.int8.onnx with --int8), each with a
    .json provenance record holding the parity result, plus the tokenizer and config.
    """
    from compressor.core.errors import CompressorError
    from compressor.onnx.folder import export_folder
    from compressor.recipe.schema import ExportStage

    if exporter not in ("auto", "torchscript", "dynamo"):
        raise CompressorError(f"--exporter {exporter}: choose auto, torchscript or dynamo")
    quiet_transformers()
    cfg = ExportStage(opset=opset, tolerance=tolerance, exporter=exporter, optimize=optimize, cls_only_last_layer=cls_only)
    done = export_folder(model_dir, output if output is not None else model_dir / "onnx", cfg, task, int8, force)
    _say(done, tolerance, optimize)


def _say(done, tolerance: float, optimize: bool) -> None:
    from compressor.onnx.folder import PARITY_BATCH, PARITY_MAX_LENGTH, PARITY_SAMPLES

    record, check, task = done.record, done.record["parity"], done.task
    typer.echo(
        f"{done.fp32}: {record['exporter']} exporter, opset {record['opset']}, inputs {', '.join(record['inputs'])}; "
        f"parity max |diff| {check['max_abs_diff']:.2e} (tolerance {tolerance:g}), {agreement(check, task)}"
    )
    opt = done.opt
    if opt is not None:
        typer.echo(
            f"{opt['path']}: fusions {', '.join(f'{k}×{v}' for k, v in opt['fusions'].items()) or 'none'}; "
            f"parity max |diff| {opt['parity']['max_abs_diff']:.2e}"
            + ("; last layer for [CLS] only" if opt["cls_only_last_layer"]["applied"] else "")
        )
    elif optimize:
        why = record.get("fused_rejected") or (record.get("fusion") or {}).get("reason")
        typer.echo(
            f"{done.fp32.name}: no ONNX Runtime fusions for model type '{done.model_type}'"
            + (f" ({why})" if why else "")
            + "; the plain graph is used"
        )
    if done.int8 is not None:
        check_q = done.int8_parity
        typer.echo(
            f"{done.int8}: dynamic INT8 of {done.best.name}; max |diff| {check_q['max_abs_diff']:.2e}, {agreement(check_q, task)}"
        )
        typer.echo(
            f"  agreement = the share of the {PARITY_SAMPLES} sample sentences (a few words to {PARITY_MAX_LENGTH} "
            f"tokens, padded in batches of {PARITY_BATCH}) whose "
            + ("predicted class" if task == "sequence-classification" else "next-token prediction, at every real token,")
            + " is the same in INT8 as in fp32 PyTorch. It is not accuracy (the sentences have no "
            "labels): `compressor eval MODEL.int8.onnx --data FILE` measures that on your data"
        )


def agreement(check: dict, task: str) -> str:
    unit = "sentences" if task == "sequence-classification" else "tokens"
    n = check.get("compared") or 0
    return f"argmax agreement {round(check['argmax_agreement'] * n)}/{n} {unit} ({check['argmax_agreement']:.1%})"
