"""What each compression stage did, for report.md and report.html alike: distillation, pruning, INT8.

Each section is plain data (a title, sentences, tables), rendered by markdown.py and html.py. Speed
statements come from latencies measured in the same run; where a comparison was not measured the
text says so instead of guessing.
"""

from __future__ import annotations

from compressor.core.health import classifier_warnings, reference_warning
from compressor.report.common import NOISE, bench_devices, bench_shapes, eval_split, metric_value, mib, p50, pct, speedup
from compressor.report.document import Section

SMALLER_NOT_FASTER = "smaller when compressed, not faster"


def _latency(results: dict, a: str, b: str) -> tuple[float, float, str, object] | None:
    """(p50 of a, p50 of b, shape, ratio verdict) at the first benchmarked shape and device, when both were measured."""
    arts, shapes, devices = results["artifacts"], bench_shapes(results), bench_devices(results)
    if a not in arts or b not in arts or not shapes or not devices:
        return None
    (bs, seq), dev = shapes[0], devices[0]
    x, y = p50(arts[a], bs, seq, dev), p50(arts[b], bs, seq, dev)
    if not (x and y):
        return None
    return x, y, f"batch {bs} × seq {seq} on {dev}", speedup(results, b, (bs, seq), dev, ref=a)


def _speed_sentence(results: dict) -> str | None:
    """The measured ORT (else PyTorch) latency of the result against the uncompressed baseline, claimed only when
    the interleaved rounds agree (``stats.ratio_verdict``)."""
    for base, mine, runtime in (("baseline-onnx", "onnx", "ONNX Runtime fp32"), ("baseline", "pytorch", "PyTorch")):
        got = _latency(results, base, mine)
        if got:
            x, y, where, v = got
            head = f"{runtime}, {where}: baseline {x:.2f} ms → {y:.2f} ms"
            if not v.claimed:
                return f"{head}, {v.cell()} ({v.explain()})"
            verdict = "faster" if x / y > 1 + NOISE else ("slower" if y / x > 1 + NOISE else f"the same within ±{NOISE:.0%}")
            return f"{head}, {x / y:.2f}× ({verdict})"
    return None


def _noise_caveat(results: dict, speed: str, what: str) -> str:
    """A latency gap between two models of the same size and architecture is timing noise: say so."""
    arts = results["artifacts"]
    base, mine = arts.get("baseline", {}), arts.get("pytorch", {})
    if (
        "(the same within" in speed
        or "not claimed" in speed
        or not base.get("params")
        or base.get("params") != mine.get("params")
    ):
        return speed
    busy = any("busy" in n for n in results.get("bench_notes", []))
    return (
        speed
        + f"; the same architecture runs the same dense kernels, so a gap this size is timing noise, {what}"
        + (" (the machine was busy while timing: see the benchmark notes)" if busy else "")
    )


def _metric_sentence(results: dict) -> str | None:
    pm, split = results["primary_metric"], eval_split(results)
    arts = results["artifacts"]
    if not split or "baseline" not in arts:
        return None
    a, b = metric_value(arts["baseline"], split, pm["name"]), metric_value(arts["pytorch"], split, pm["name"])
    if a is None or b is None:
        return None
    scale, unit = (100, " pt") if pm["name"] == "accuracy" else (1, "")
    paired = arts["pytorch"].get("metrics", {}).get(split, {}).get("paired") or {}
    verdict = ""
    if "significant" in paired:
        p = f"McNemar p = {paired['p_value']:.2g}" if "p_value" in paired else "paired bootstrap"
        verdict = f"; {'a significant change' if paired['significant'] else 'no significant change'} ({p})"
    return f"{split} {pm['name']}: baseline {a * scale:.2f} → {b * scale:.2f} ({(b - a) * scale:+.2f}{unit}{verdict})"


def _unstructured(p: dict, results: dict, where: str) -> Section:
    sec = Section(f"Unstructured pruning ({where})")
    mode = p.get("mode", "one-shot")
    how = f"{p['criterion']} importance, {p['scope']} scope"
    if mode == "gradual":
        s = p["schedule"]
        how += f", {s['type']} schedule from step {s['start']} to {s['end']} every {s['every']} steps"
    sec.lines.append(
        f"{pct(p['sparsity'])} of the {p['params']:,} weights in {len(p['layers'])} Linear layers are zero "
        f"(target {pct(p['target'])}; {mode}, {how})."
    )
    arts = results["artifacts"]
    mine = arts.get("pytorch", {})
    base = arts.get("baseline")
    size = f"PyTorch weights: {mib(mine['size_bytes'])} dense, {mib(mine['gzip_bytes'])} gzip-compressed"
    if base:
        size += f" (baseline: {mib(base['size_bytes'])} dense, {mib(base['gzip_bytes'])} gzip)"
    sec.lines.append(size + ".")
    speed = _speed_sentence(results)
    if speed and base and base.get("params") and mine.get("params") and base["params"] != mine["params"]:
        speed += (
            f"; the baseline is another architecture ({base['params'] / 1e6:.2f} M vs {mine['params'] / 1e6:.2f} M "
            "parameters, e.g. the distillation teacher), so this difference comes from the architecture, not from the zeros"
        )
    elif speed:
        speed = _noise_caveat(results, speed, "not the zeros")
    sec.lines.append(
        f"**{SMALLER_NOT_FASTER.capitalize()}**: the zeros stay in dense matrices and ONNX Runtime CPU / "
        "PyTorch have no sparse kernels for them. "
        + (f"Measured: {speed}." if speed else "No same-run latency of the unpruned model to compare with.")
    )
    rows = [[r["name"], f"{r['params']:,}", f"{r['zeros']:,}", pct(r["sparsity"])] for r in p["layers"]]
    sec.tables.append(("Per-layer sparsity", ["layer", "weights", "zeros", "sparsity"], rows))
    return sec


def _structured(p: dict, results: dict, where: str) -> Section:
    sec = Section(f"Structured pruning ({where})")
    h, f = p["heads"], p["ffn"]
    sec.lines.append(
        f"Attention heads {h['before']} → {h['after']} per layer, FFN neurons {f['before']} → {f['after']} per "
        f"layer ({p['criterion']} importance"
        + (f", {p['batches_observed']} batches" if p.get("batches_observed") else "")
        + "); the matrices are physically smaller."
    )
    sec.lines.append(
        f"Parameters {p['params_before'] / 1e6:.2f} M → {p['params_after'] / 1e6:.2f} M "
        f"({p['params_before'] / max(p['params_after'], 1):.2f}× fewer)."
    )
    speed, metric = _speed_sentence(results), _metric_sentence(results)
    sec.lines.append(f"Measured speed: {speed}." if speed else "Speed: not measured against the unpruned model in this run.")
    if metric:
        sec.lines.append(f"Accuracy after pruning and any recovery training: {metric}.")
    if h.get("kept") and h["before"] != h["after"]:
        rows = [[str(i), ", ".join(map(str, k))] for i, k in enumerate(h["kept"])]
        sec.tables.append(("Heads kept per layer", ["layer", "heads kept"], rows))
    return sec


def _vocabulary(p: dict, results: dict, where: str) -> Section:
    sec = Section(f"Vocabulary trimming ({where})")
    sec.lines.append(
        f"Vocabulary {p['vocab_before']:,} → {p['vocab_after']:,} tokens; parameters "
        f"{p['params_before'] / 1e6:.2f} M → {p['params_after'] / 1e6:.2f} M (embeddings "
        f"{p['embedding_params_before'] / 1e6:.2f} M → {p['embedding_params_after'] / 1e6:.2f} M)."
    )
    kept = p.get("kept") or {}
    if kept:
        sec.lines.append("Kept: " + ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in kept.items()) + ".")
    before, after = p.get("dev_before") or {}, p.get("dev_after") or {}
    name = results["primary_metric"]["name"]
    if name in before and name in after:
        scale = 100 if name == "accuracy" else 1
        sec.lines.append(
            f"dev {name} {before[name] * scale:.2f} → {after[name] * scale:.2f} right after trimming "
            "(texts re-tokenized with the trimmed tokenizer)."
        )
    sec.lines.append("Embedding lookups cost no compute: smaller, about as fast.")
    return sec


def _distill(s: dict, results: dict, where: str) -> Section:
    sec = Section(f"Distillation ({where})")
    t, st = s.get("teacher", {}), s.get("student", {})
    name = results["primary_metric"]["name"]
    where, tmetrics = next(iter(t.get("metrics", {}).items()), ("dev", {}))
    tm = tmetrics.get(name)
    scale = 100 if name == "accuracy" else 1
    sel = (s.get("selection") or {}).get("split", "dev")
    sec.lines.append(
        f"Teacher: {t.get('layers')} layers, {t.get('params', 0) / 1e6:.2f} M parameters"
        + (f", {where} {name} {tm * scale:.2f}" if tm is not None else "")
        + "."
    )
    sec.lines.append(
        f"Student: {st.get('layers')} layers, {st.get('params', 0) / 1e6:.2f} M parameters, built from "
        f"{_built_from(st.get('built_from'))}; losses: " + ", ".join(_loss(x) for x in s.get("losses", [])) + "."
    )
    if s.get("best_dev") is not None:
        sec.lines.append(
            f"Best student {sel} {name} {s['best_dev'] * scale:.2f} (the checkpoint kept) at step {s.get('best_step')} of {s.get('steps')}"
            + (f" ({s['best_dev'] / tm:.1%} of the teacher)" if tm and name == "accuracy" else "")
            + "."
        )
    sec.lines += _collapse_caveats(results, next(iter(t.get("metrics", {}).values()), {}), "the teacher", "the student")
    speed = _speed_sentence(results)
    if speed:
        sec.lines.append(f"Measured: {_noise_caveat(results, speed, 'not a gain of distillation')}.")
    return sec


def _loss(x: dict) -> str:
    if x["type"] != "logits":
        return x["type"] + (f" ×{x['weight']}" if x.get("weight", 1.0) != 1.0 else "")
    if x.get("alpha") == 1.0:
        return "hard labels only (logits, α 1: no teacher signal)"
    return f"logits (τ {x.get('temperature')}, α {x.get('alpha')})"


def _built_from(b) -> str:
    if not b:
        return "?"
    return ", ".join(f"{k} {v}" if k != "current" else "the model the previous stages left" for k, v in b.items())


def _collapse_caveats(results: dict, ref: dict, ref_name: str, mine: str) -> list[str]:
    """A comparison with a collapsed reference (or a collapsed result) carries the warning where it is made."""
    caveat = reference_warning(ref, ref_name, results.get("labels"))
    if caveat:
        return [caveat]
    split = eval_split(results)
    own = results["artifacts"].get("int8" if "INT8" in mine else "pytorch", {}).get("metrics", {}).get(split, {})
    why = classifier_warnings(own, results.get("labels"))
    return [f"**Warning**: {mine} {why[0]} ({split})."] if why else []


def _int8(s: dict, results: dict, where: str) -> Section | None:
    kept, budget = s.get("kept_fp32") or [], s.get("budget")
    if s.get("scheme") != "static" and not kept and not budget:
        return None
    sec = Section(f"INT8 ({where})")
    sec.lines.append(
        f"Static INT8 ({s.get('method')}) on the {s.get('graph')} graph"
        + (f"; fused graph not used: {s['fused_fallback']}" if s.get("fused_fallback") else "")
        + "."
    )
    if budget:
        verdict = "met" if budget.get("passed") else "missed (the best trial is kept)"
        sec.lines.append(f"Accuracy budget {verdict} after {len(budget.get('trials', []))} trial(s).")
        ref = results["artifacts"].get("onnx") or results["artifacts"].get("pytorch") or {}
        sec.lines += (
            [budget["reference_warning"]]
            if budget.get("reference_warning")
            else _collapse_caveats(
                results, ref.get("metrics", {}).get(budget.get("split"), {}), "the fp32 reference", "the INT8 graph"
            )
        )
        rows = [
            [str(i), str(len(t["kept_fp32"])), f"{t['value']:.4f}", f"{t['drop']:+.3f}", "yes" if t["passed"] else "no"]
            for i, t in enumerate(budget.get("trials", []))
        ]
        sec.tables.append(("Budget trials", ["trial", "nodes in fp32", "metric", "drop", "within budget"], rows))
    if kept:
        sec.tables.append(("Kept in fp32 (most sensitive first)", ["node"], [[n] for n in kept]))
    return sec


def sections(results: dict) -> list[Section]:
    """One sub-section per stage record that compressed something (distillation, pruning, vocabulary, INT8)."""
    out = []
    for i, s in enumerate(results.get("stages", [])):
        where = f"stage {i}: {s['stage']}"
        if s["stage"] == "distill" and "teacher" in s:
            out.append(_distill(s, results, where))
        p = s.get("prune")
        if p:
            builder = {"unstructured": _unstructured, "structured": _structured}.get(p.get("type"))
            if builder:
                out.append(builder(p, results, where))
        if s.get("type") == "vocabulary":
            out.append(_vocabulary(s, results, where))
        if s["stage"] == "quantize":
            sec = _int8(s, results, where)
            if sec:
                out.append(sec)
    return out


def compression_section(results: dict) -> Section:
    return Section("Compression", subsections=sections(results))
