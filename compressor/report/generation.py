"""The generation section of a causal-LM run (``bench.generation``): prefill ms, decode tokens/s and peak memory of
every artifact at each batch size beside its perplexity, and the perplexity-vs-decode-speed figure."""

from __future__ import annotations

from compressor.report.common import artifact_label, eval_split, metric_cell
from compressor.report.document import Figures, Notes, Section, Table


def generation_table(results: dict) -> Table | None:
    arts = {n: a for n, a in results["artifacts"].items() if a.get("generation")}
    if not arts:
        return None
    split = eval_split(results)
    ref = arts.get("pytorch", {}).get("generation") or []
    ref_tps = {r["batch"]: r["decode_tokens_per_s"] for r in ref}
    head = [
        "artifact",
        "batch",
        f"perplexity ({split})" if split else "perplexity",
        "size MiB",
        "prefill ms",
        "decode tokens/s",
        "ms / decode step",
        "× PyTorch decode",
        "peak RSS MiB",
    ]
    rows = []
    for name, a in arts.items():
        m = a.get("metrics", {}).get(split, {}) if split else {}
        for r in sorted(a["generation"], key=lambda r: r["batch"]):
            base = ref_tps.get(r["batch"])
            ratio = "reference" if name == "pytorch" else (f"{r['decode_tokens_per_s'] / base:.2f}×" if base else "")
            rss, start = r.get("peak_rss_mb"), r.get("start_rss_mb")
            rows.append(
                [
                    artifact_label(name, a),
                    str(r["batch"]),
                    metric_cell(m, "perplexity") if m else "",
                    f"{a.get('size_bytes', 0) / 2**20:.1f}",
                    f"{r['prefill_ms']:.1f}",
                    f"{r['decode_tokens_per_s']:.1f}",
                    f"{r.get('decode_ms_per_token') or 0:.2f}",
                    ratio,
                    "" if rss is None else f"{rss:.0f}" + (f" (+{rss - start:.0f})" if start is not None else ""),
                ]
            )
    return Table(head, rows)


def generation_section(results: dict) -> Section | None:
    table = generation_table(results)
    if table is None:
        return None
    s = results.get("generation_settings") or {}
    how = (
        f"Prompt of {s.get('prompt', '?')} random tokens (prefill timed alone), then {s.get('new_tokens', '?')} greedy "
        f"tokens (the first from the prefill; a decode step adds one token to every row; decode tokens/s counts the other {max(int(s.get('new_tokens', 2)) - 1, 1)}"
        f" steps, every row of the batch); median of {s.get('repeats', '?')} measurements after "
        f"{s.get('warmup', '?')} warm-up, {s.get('threads', '?')} threads. PyTorch decodes with its own KV cache, "
        "the ONNX graphs through their past / present inputs and outputs."
    )
    notes = [
        how,
        "Peak RSS is the high-water mark of the process that timed the artifact (runtime, weights, cache and "
        "activations), measured up to and including that batch size: each artifact runs in a process of its own; "
        "in brackets, what it added to the process before any runtime or model was loaded.",
        "The artifacts are timed one after another, not in interleaved rounds (each needs its own process for its "
        "memory figure): under a changing load their ratios are less certain than the latency table's.",
    ]
    return Section(
        "Generation",
        blocks=[
            table,
            Notes(notes),
            Figures(
                ["generation"],
                "Perplexity against decode time per token: circled points "
                "are on the Pareto front (no other artifact both faster and lower in "
                "perplexity).",
            ),
        ],
    )
