"""``compressor bench``: the options, calls into compressor/measure/bench/artifacts.py, the table it prints."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from compressor.cli.support import guarded, ints, quiet_transformers, warn


@guarded
def bench(
    artifacts: list[Path] = typer.Argument(..., metavar="ARTIFACT...", help="Model directories and / or .onnx files."),
    batch_sizes: str = typer.Option("1,8", "--batch-sizes", help="Comma-separated batch sizes."),
    seq_lengths: str = typer.Option("128", "--seq-lengths", help="Comma-separated sequence lengths."),
    iterations: int = typer.Option(30, "--iterations", min=1, help="Timed runs per shape."),
    warmup: int = typer.Option(5, "--warmup", min=0, help="Untimed runs per shape first."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Intra-op threads (default: all cores)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda."),
    rounds: int = typer.Option(
        5,
        "--rounds",
        "--repeat",
        min=1,
        help="Interleaved rounds: every artifact is timed once per round; ratios are claimed only "
        "when the rounds agree. More rounds: a steadier verdict on a busy machine.",
    ),
    json_out: Optional[Path] = typer.Option(None, "--json", metavar="FILE", help="Also write the rows as JSON."),
    prompt: int = typer.Option(
        0,
        "--prompt",
        min=0,
        help="Causal LMs: time generation instead, from a prompt of this "
        "many tokens (prefill ms); ONNX files must be cached graphs (export with_past).",
    ),
    new_tokens: int = typer.Option(
        0,
        "--new-tokens",
        min=0,
        help="Causal LMs: tokens generated after the prompt, greedy "
        "with the KV cache (decode tokens/s); --iterations then counts whole generations.",
    ),
):
    """Latency and throughput of models / ONNX files on synthetic batches.

    All artifacts are timed in one separate process with the same threads and passive waiting for PyTorch and
    ONNX Runtime, in interleaved rounds; the table compares each with the first artifact.
    """
    from compressor.core.errors import CompressorError
    from compressor.measure.bench.artifacts import check_artifacts, time_plan
    from compressor.measure.bench.runner import cuda_available

    bs, sl = ints(batch_sizes, "--batch-sizes"), ints(seq_lengths, "--seq-lengths")
    if device not in ("cpu", "cuda"):
        raise CompressorError(f"--device {device}: choose cpu or cuda")
    if device == "cuda" and not cuda_available():
        raise CompressorError("--device cuda: no CUDA GPU is visible")
    quiet_transformers()
    plan = check_artifacts(artifacts, sl)  # every artifact checked before any is measured
    if prompt or new_tokens:
        return _bench_generation(plan, prompt or 128, new_tokens or 64, bs, warmup, iterations, threads, device, json_out)
    rows, notes = time_plan(plan, bs, sl, warmup, iterations, rounds, threads, device)
    settings = {
        "batch_sizes": bs,
        "seq_lengths": sl,
        "iterations": iterations,
        "rounds": rounds,
        "warmup": warmup,
        "threads": threads,
        "device": device,
    }
    _say(rows, notes, artifacts, settings, json_out)


def _say(rows: list[dict], notes: list[str], artifacts: list[Path], settings: dict, json_out: Optional[Path]) -> None:
    from compressor.core.rundir import atomic_write_json
    from compressor.measure.bench.runner import fingerprint
    from compressor.measure.bench.worker import thread_policy
    from compressor.report.terminal import bench_summary, print_summary

    fp = fingerprint()
    policy = thread_policy(settings["threads"])
    print_summary(
        f"bench: {settings['iterations']} timed runs per shape in "
        f"{min(settings['rounds'], settings['iterations'])} interleaved rounds, {settings['warmup']} warm-up",
        *bench_summary(rows, [str(a) for a in artifacts]),
    )
    typer.echo(
        f"measured on {fp['cpu']}, {fp['cores']} cores ({', '.join(fp['cpu_flags']) or 'no AVX2/VNNI'})"
        + (f", GPU {fp['gpu']}" if fp.get("gpu") else "")
        + f"; {policy['threads']} threads, passive waiting "
        "for every runtime"
    )
    for n in notes:
        warn(n)
    if json_out is not None:
        atomic_write_json(
            json_out, {"fingerprint": fp, "timing_policy": policy, "settings": settings, "notes": notes, "rows": rows}
        )


def _bench_generation(plan, prompt, new_tokens, bs, warmup, repeats, threads, device, json_out) -> None:
    from compressor.core.rundir import atomic_write_json
    from compressor.measure.bench.decode import generation_rows
    from compressor.measure.bench.runner import fingerprint
    from compressor.report.markdown import print_rows

    rows = generation_rows(plan, prompt, new_tokens, bs, warmup, repeats, threads, device)
    head = ["artifact", "runtime", "batch", "prompt", "new tokens", "prefill ms", "decode ms/token", "decode tokens/s"]
    table = [
        [
            r["artifact"],
            r["runtime"],
            str(r["batch"]),
            str(r["prompt"]),
            str(r["new_tokens"]),
            f"{r['prefill_ms']:.2f}",
            f"{r['decode_ms_per_token']:.2f}",
            f"{r['decode_tokens_per_s']:.1f}",
        ]
        for r in rows
    ]
    print_rows(f"generation: medians of {repeats} after {warmup} warm-up, greedy, KV cache", head, table)
    if json_out is not None:
        atomic_write_json(
            json_out,
            {
                "fingerprint": fingerprint(),
                "settings": {
                    "prompt": prompt,
                    "new_tokens": new_tokens,
                    "batch_sizes": bs,
                    "repeats": repeats,
                    "warmup": warmup,
                    "threads": threads,
                },
                "rows": rows,
            },
        )
