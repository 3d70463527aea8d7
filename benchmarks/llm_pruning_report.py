"""LLM_PRUNING.md from a run of benchmarks/llm_pruning.py (its JSON): the tables, the targets, the reading."""

from __future__ import annotations

TITLE = {"smollm2": "SmolLM2-135M (WikiText-2 raw test)", "tinyshakespeare": "our Tiny Shakespeare model (its validation text)"}
PATTERNS = ("unstructured", "2:4")
LOSS = {
    "ce": "next-token cross-entropy",
    "kd": "KL to the dense model's logits (temperature 1; a recipe's `distill: {teacher: DENSE_DIR, student: current, lora: ...}`)",
}
VARIANT = {
    "kd-full": "KD, full fine-tuning",
    "ce-full": "no KD (twin), full fine-tuning",
    "kd-lora": "KD, LoRA",
    "ce-lora": "no KD (twin), LoRA",
}


def _recovery_targets(model: str, base: float, rows: list[dict]) -> list[dict]:
    by = {(r["method"], r["pattern"]): r for r in rows if r.get("model", "smollm2") == model}
    out = []
    for pattern in PATTERNS:
        mag = by.get(("magnitude", pattern))
        for method in ("wanda", "sparsegpt"):
            r = by.get((method, pattern))
            if mag is None or r is None:
                continue
            rise = mag["ppl_pruned"] - base
            recovered = (mag["ppl_pruned"] - r["ppl_pruned"]) / rise if rise > 0 else float("nan")
            out.append(
                {
                    "target": f"{model} {method} {pattern}: recovers >= half of magnitude's perplexity increase",
                    "measured": f"{100 * recovered:.0f} % ({mag['ppl_pruned']:.1f} -> {r['ppl_pruned']:.1f}; dense {base:.1f})",
                    "met": bool(recovered >= 0.5),
                    "binding": pattern == "unstructured",
                }
            )
    return out


def _lora_target(r: dict) -> dict:
    exact = (
        abs(r["sparsity_after_merge"]["sparsity"] - r["sparsity"]["sparsity"]) < 1e-12
        and r.get("nm_violations_after_merge", 0) == 0
    )
    return {
        "target": f"{r.get('model', 'smollm2')} {r['method']} {r['pattern']}: LoRA lowers perplexity, sparsity exact after the merge",
        "measured": f"{r['ppl_pruned']:.2f} -> {r['ppl_lora']:.2f}; sparsity {100 * r['sparsity']['sparsity']:.3f} % "
        f"-> {100 * r['sparsity_after_merge']['sparsity']:.3f} %",
        "met": bool(r["ppl_lora"] < r["ppl_pruned"] and exact),
        "binding": True,
    }


def targets(res: dict) -> list[dict]:
    """The issue's targets, each with what was measured and whether it is met."""
    out = []
    for model, base in res["dense_ppl"].items():
        out += _recovery_targets(model, base, res["rows"])
    out += [_lora_target(r) for r in res["rows"]]
    kd = {r["variant"]: r for r in res.get("kd", {}).get("rows", [])}
    for how in ("full", "lora"):
        k, c = kd.get(f"kd-{how}"), kd.get(f"ce-{how}")
        if k and c:
            out.append(
                {
                    "target": f"KD student ({how}) beats its non-KD twin",
                    "binding": True,
                    "measured": f"perplexity {k['ppl']:.2f} (KD) vs {c['ppl']:.2f} (no KD), {k['steps']} steps each",
                    "met": bool(k["ppl"] < c["ppl"]),
                }
            )
    return out


def _procedure(res: dict) -> list[str]:
    a = res["settings"]
    ts_tokens = res.get("tinyshakespeare_eval_tokens")
    ts_windows = ts_tokens // a["ts_window"] if ts_tokens else 0
    return [
        "## Procedure",
        "",
        f"- Perplexity (`compressor.measure.perplexity`, the procedure of `compressor eval`): SmolLM2 on WikiText-2 raw "
        f"test, the first {a['windows']} disjoint windows of {a['window']} tokens (stride {a['window']}, "
        f"{a['windows'] * (a['window'] - 1)} predicted tokens): a small, stated sample — compare rows with each other, "
        "not with published full-test-set figures. Our Tiny Shakespeare model on its validation text (the last 10 % of "
        f"the tokens of input.txt) after its first {a.get('ts_select_windows', 0)} windows (the pilot's selection text, "
        f"see the end): {ts_tokens or 0:,} tokens, {ts_windows} disjoint windows of {a['ts_window']} tokens "
        f"(stride {a['ts_window']}).",
        f"- Calibration (Wanda, SparseGPT): SmolLM2 {a['calib_samples']} blocks of {a['calib_len']} tokens of WikiText-2 "
        f"validation; Tiny Shakespeare {a['ts_calib_samples']} blocks of {a['ts_window']} tokens of its training text "
        "(the first 90 %); sequentially layer by layer (the papers use 128 x 2048 tokens; these are CPU-sized sets).",
        "- Pruned: every Linear of the decoder layers (SmolLM2: 30 layers, 210 matrices; Tiny Shakespeare: 4 layers, "
        "28 matrices) at 50 %; magnitude compares per layer, Wanda per output row, SparseGPT per 128-column block "
        "(dampening 0.01).",
        f"- LoRA recovery: rank {a['rank']}, alpha {2 * a['rank']}; SmolLM2 {a['lora_steps']} steps x "
        f"{a['lora_batch']} blocks of {a['lora_len']} tokens of WikiText-2 validation (after the calibration blocks), lr {a['lora_lr']}, "
        f"loss: {LOSS[a.get('recovery_loss', 'ce')]}; Tiny Shakespeare {a['ts_lora_steps']} steps x {a['ts_lora_batch']} blocks "
        f"of {a['ts_window']} tokens of its training text (after its calibration blocks), lr {a['ts_lora_lr']}, loss: "
        f"{LOSS[a.get('ts_recovery_loss', 'ce')]}; merged with the pruning masks re-applied.",
        "- SmolLM2's weights come from a Q4_1 GGUF (a 4-bit grid), dequantized to fp32; our Tiny Shakespeare model "
        "(4-layer Llama layout, hidden 128, trained from scratch by recipes/tinyshakespeare.yaml) sits on no grid.",
        "",
    ]


def _prune_table(res: dict, model: str) -> list[str]:
    rows = [r for r in res["rows"] if r.get("model", "smollm2") == model]
    if not rows:
        return []
    lines = [
        f"## Pruning: {TITLE[model]}",
        "",
        f"Dense model: perplexity **{res['dense_ppl'][model]:.2f}**.",
        "",
        "| method | pattern | sparsity (layer min-max) | calib s | peak RSS MiB | ppl pruned | ppl after LoRA | "
        "sparsity after merge | regrown by a raw merge | LoRA s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    bound = "" if res.get("rss_source") == "VmHWM" else "≤ "  # ru_maxrss: the parent's size at the fork is a floor
    for r in rows:
        s, m = r["sparsity"], r["sparsity_after_merge"]
        lines.append(
            f"| {r['method']} | {r['pattern']} | {100 * s['sparsity']:.2f} % ({100 * s['layer_min']:.2f}-"
            f"{100 * s['layer_max']:.2f}) | {r['calibration_s']} | {bound}{r['peak_rss_mib']} | {r['ppl_pruned']:.2f} | "
            f"{r['ppl_lora']:.2f} | {100 * m['sparsity']:.2f} % | {r['lora']['regrown_and_reset']:,} | {r['lora_s']} |"
        )
    return lines + [""]


def _kd_section(res: dict) -> list[str]:
    kd, a = res.get("kd") or {}, res["settings"]
    if not kd.get("rows"):
        return []
    lines = [
        "## Shallower KD student of SmolLM2 (15 of 30 layers)",
        "",
        f"Student: teacher layers {_ranges(kd['rows'][0]['layers'])}, copied from the teacher (embeddings, final norm "
        "and tied head included), built by the library's layer-subset student (`distill: {student: {layers: [...]}}`). "
        "Which 15: the subset the teacher's own weights start best from, measured in this run (perplexity before any "
        "training, same windows):",
        "",
        "| candidate (teacher layers kept) | perplexity at init |",
        "|---|---|",
    ]
    lines += [f"| {c['name']} | {c['ppl_init']:,.0f} |" for c in kd["candidates"]]
    first = kd["rows"][0]
    lines += [
        "",
        f"Training: {first['steps']} steps x {a['kd_batch']} blocks of {a['kd_len']} tokens ({first['tokens']:,} "
        "tokens) drawn by one seeded shuffle from a pool of Tiny Shakespeare (first 90 %) and WikiText-2 validation "
        f"blocks ({', '.join(f'{k} {v:,}' for k, v in first['blocks'].items())} blocks; the shared data has no WikiText-2 "
        "train split), the same blocks in the same order for every variant; AdamW, warmup 10 %, linear decay, lr "
        f"{a['kd_lr']} (full) / {a['kd_lora_lr']} (LoRA rank {a['kd_rank']}, alpha {2 * a['kd_rank']}, on every "
        f"decoder Linear, merged at the end). KD: token-level KL(teacher ‖ student) at temperature "
        f"{a['kd_temperature']} with hard-label weight alpha {a['kd_alpha']} (`losses: [{{type: logits, alpha: "
        f"{a['kd_alpha']}, temperature: {a['kd_temperature']}}}]`); the twin: plain next-token loss (alpha 1, no teacher "
        "pass).",
        "",
        "| model | layers | parameters | trained parameters | train s | perplexity | selection-text perplexity |",
        "|---|---|---|---|---|---|---|",
        f"| teacher (SmolLM2-135M) | 30 | {kd['teacher_params']:,} | - | - | {kd['teacher_ppl']:.2f} | "
        f"{_num(kd.get('teacher_ppl_select'))} |",
    ]
    init = next((c for c in kd["candidates"] if c["layers"] == first["layers"]), None)
    if init:
        lines.append(f"| student at init (no training) | 15 | {first['params']:,} | - | - | {init['ppl_init']:,.2f} | - |")
    for r in kd["rows"]:
        lines.append(
            f"| student: {VARIANT.get(r['variant'], r['variant'])} | 15 | {r['params']:,} | {r['trainable_params']:,} | "
            f"{r['train_s']} | {r['ppl']:.2f} | {_num(r.get('ppl_select'))} |"
        )
    return lines + [
        "",
        "Perplexity: the WikiText-2 test windows of the pruning rows (the reported figure). Selection text: the first "
        "40 windows of the held-out last 10 % of Tiny Shakespeare (no training block comes from it), on which the KD "
        "settings were chosen before this run (see *How the settings were chosen*).",
        "",
    ]


def _num(x) -> str:
    return "-" if x is None else f"{x:.2f}"


def _ranges(layers: list[int]) -> str:
    out, start = [], layers[0]
    for prev, cur in zip(layers, layers[1:] + [None]):
        if cur != prev + 1:
            out.append(f"{start}-{prev}" if prev != start else f"{start}")
            start = cur
    return ", ".join(out)


def _rss_note(res: dict) -> list[str]:
    if res.get("rss_source") == "VmHWM":
        return [
            "- `peak RSS` is each child's own high-water mark (VmHWM) up to the end of pruning, the model load and the "
            "Python / PyTorch runtime included (the Tiny Shakespeare rows are almost all runtime). Magnitude with "
            "per-layer masks scores, masks and releases one matrix at a time; Wanda and SparseGPT hold one layer's "
            "calibration activations at a time (SparseGPT also that layer's input Hessians and their inverses)."
        ]
    values = sorted({r["peak_rss_mib"] for r in res["rows"]})
    return [
        f"- `peak RSS` in this run is **only an upper bound** (`≤`): the script read `ru_maxrss`, which Linux keeps "
        "across execve, so each child reported at least the parent's resident size when it was started "
        f"(every row: {', '.join(f'{v:,}' for v in values)} MiB, the Tiny Shakespeare rows too). The script now "
        "reads VmHWM, the child's own high-water mark; the next run gives each method's peak."
    ]


def _kd_reading(res: dict) -> list[str]:
    a = res["settings"]
    kd = {r["variant"]: r for r in (res.get("kd") or {}).get("rows", [])}
    if not {"kd-full", "ce-full", "kd-lora", "ce-lora"} <= set(kd):
        return []
    full, lora = (kd["kd-full"]["ppl"], kd["ce-full"]["ppl"]), (kd["kd-lora"]["ppl"], kd["ce-lora"]["ppl"])
    zeros = kd["kd-lora"]["lora"]["regrown_and_reset"]
    return [
        f"- KD student, full fine-tuning: KD {full[0]:.2f} against its twin's {full[1]:.2f} "
        f"({100 * (full[0] / full[1] - 1):+.1f} %); with LoRA: KD {lora[0]:.2f} against {lora[1]:.2f} "
        f"({100 * (lora[0] / lora[1] - 1):+.1f} %). One seed and {kd['kd-full']['steps']} steps per variant; the KD "
        "weight and the LoRA learning rate were chosen on a 50-step pilot on the selection text, with the same "
        "learning rates tried for KD and its twin (*How the settings were chosen*). Every student stays far from the teacher "
        f"({kd['kd-full']['tokens']:,} training tokens against the billions of the depth-pruning + distillation papers, "
        "e.g. Minitron); the teacher's forward pass on every step is why a KD run takes longer than its twin."
        + (
            f" LoRA at lr {a['kd_lora_lr']:g} ends below full fine-tuning at lr {a['kd_lr']:g} (not tuned): read that gap "
            "as the learning rates', not as LoRA being the better method."
            if kd["kd-lora"]["ppl"] < kd["kd-full"]["ppl"]
            else ""
        ),
        f"- The LoRA merge treats a weight that was exactly zero before training as pruned: on the unpruned student "
        f"it kept {zeros:,} zeros of the Q4_1 grid at zero (0.03 % of the adapted weights).",
    ]


def _reading(res: dict) -> list[str]:
    a, ts = res["settings"], [r for r in res["rows"] if r.get("model") == "tinyshakespeare"]
    lines = [
        "## Reading the figures",
        "",
        "- `calib s` for magnitude is its scoring and masking time (it observes nothing); for Wanda and SparseGPT "
        "the sequential calibration, both inflated by the shared CPU.",
        *_rss_note(res),
        "- SmolLM2: SparseGPT behind Wanda is expected from the tiny calibration set: "
        f"{a['calib_samples'] * a['calib_len']} tokens give a rank-deficient Hessian for the 1,536-input down_proj "
        "(and a noisy one for the 576-input layers), held up only by the dampening; the SparseGPT paper calibrates on "
        "128 x 2,048 tokens.",
        "- A SmolLM2 layer above 50.00 % holds weights that were exactly zero before pruning (the Q4_1 grid has zeros); "
        "`regrown by a raw merge` counts the zeros the LoRA update B·A would have filled had the merge not re-applied "
        "the masks.",
    ]
    if ts:
        worst = max(r["ppl_pruned"] for r in ts)
        worse = [
            f"{r['method']} {r['pattern']} {r['ppl_pruned']:.2f} -> {r['ppl_lora']:.2f}"
            for r in ts
            if r["ppl_lora"] >= r["ppl_pruned"]
        ]
        lines.append(
            f"- Our Tiny Shakespeare model loses little at 50 % (dense {res['dense_ppl']['tinyshakespeare']:.2f}, "
            f"the worst pruned row {worst:.2f}), so the methods differ by tenths to a few perplexity points and its "
            "targets are decided by small margins. Its recovery distils from the dense model (KL to its logits) on blocks of "
            "its own training text: the dense model was trained on that text, so next-token loss on it mostly fits "
            "the training text again (in the pilot it raised 3 of 6 rows); the dense model's logits are the function "
            "to recover. "
            + (
                f"It did not lower perplexity on {len(worse)} row{'s' if len(worse) != 1 else ''} ({'; '.join(worse)}), "
                "where pruning had left it within a few tenths of the dense model: what remained to recover was "
                "smaller than what 30 steps of training on the training text move."
                if worse
                else "It lowered every row."
            )
        )
    lines += _kd_reading(res)
    lines.append(
        "- The KD student's perplexities are on the same WikiText-2 test windows as the SmolLM2 pruning rows; the "
        "student halves the decoder layers but keeps the embeddings (28 M of SmolLM2's 134.5 M parameters), so it "
        "has 60 % of the parameters, not half."
    )
    return lines + [""]


def _pilot(res: dict) -> list[str]:
    """The pilot runs (before this run, on the selection texts) that chose the recovery loss and the KD settings."""
    p = res.get("pilot")
    if not p:
        return []
    ts, kd = p["tinyshakespeare_recovery"], p["kd"]
    lines = [
        "## How the settings were chosen (pilot runs before this run)",
        "",
        p["note"],
        "",
        f"Tiny Shakespeare recovery loss and lr ({ts['steps']} LoRA steps): the same script (`--models tinyshakespeare --ts-select-windows 0 --ts-windows "
        f"{ts['windows']}`), perplexity on the first {ts['windows']} windows of its validation text, the selection text "
        f"the reported rows leave out (dense {ts['dense']:.2f}):",
        "",
        "| method | pattern | pruned | "
        + " | ".join(f"{'KL to dense' if c['loss'] == 'kd' else 'next-token'}, lr {c['lr']:g}" for c in ts["columns"])
        + " |",
        "|---|---|---|" + "---|" * len(ts["columns"]),
    ]
    lines += [
        f"| {r['method']} | {r['pattern']} | {r['ppl_pruned']:.2f} | " + " | ".join(f"{x:.2f}" for x in r["lora"]) + " |"
        for r in ts["rows"]
    ]
    lines += ["", ts["chosen"]]
    lines += [
        "",
        f"KD student: {kd['steps']}-step runs (`--kd VARIANT --kd-steps {kd['steps']}`), chosen on the selection text "
        "(the WikiText-2 test figure was printed too and is shown, but it chose nothing):",
        "",
        "| variant | KD weight (1 - alpha) | lr | selection-text perplexity | WikiText-2 test perplexity |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {VARIANT.get(r['variant'], r['variant'])} | {1 - r['alpha']:g} | {r['lr']:g} | {r['ppl_select']:.2f} | "
        f"{r['ppl']:.2f} |"
        for r in kd["rows"]
    ]
    return lines + ["", kd["chosen"], ""]


def render(res: dict) -> str:
    a = res["settings"]
    lines = [
        "# LLM compression that keeps quality: one-shot pruning + LoRA, and a shallower KD student",
        "",
        f"Written by `python benchmarks/llm_pruning.py` in one run ({res['total_s'] / 60:.1f} min on {res['machine']}, "
        f"{a['parallel']} measurements at a time, {a['threads']} thread each; the machine was shared with other jobs "
        f"(load at the end {res['load']}), so times are indicative only).",
        "",
    ]
    lines += _procedure(res)
    for model in TITLE:
        lines += _prune_table(res, model)
    lines += _kd_section(res)
    lines += ["## Targets", "", "| target | measured | met |", "|---|---|---|"]
    for t in res["targets"]:
        met = "yes" if t["met"] else "**no**"
        if not t.get("binding", True):
            met = f"{'yes' if t['met'] else 'no'} (reported; the issue's target is unstructured)"
        lines.append(f"| {t['target']} | {t['measured']} | {met} |")
    lines += [""] + _reading(res) + _pilot(res)
    lines += [
        "## 2:4 on CPU, and the GPU",
        "",
        "2:4 sparsity here is *smaller when compressed, not faster*: PyTorch and ONNX Runtime on CPU run the same "
        "dense kernels on a matrix whose zeros are stored, so no speed was measured or claimed. Stored as values "
        "plus 2-bit positions, a 2:4 fp32 matrix takes 51.6 % of its dense bytes. No GPU sparse kernel ran (this session had no GPU). QLoRA (`lora: {base: nf4}`: "
        "bitsandbytes 4-bit base weights, adapters in full precision, merged back to a plain model) is in the library "
        "and tested on CPU (tests/integration/test_qlora.py, with the `qlora` extra), but not part of this run: its "
        "point is accelerator memory, which a CPU run does not show.",
        "",
        "## Sized for a shared 2-core CPU",
        "",
        f"SmolLM2's LoRA recovery is {a['lora_steps']} steps, its perplexity {a['windows']} windows, its calibration "
        f"{a['calib_samples'] * a['calib_len']:,} tokens, and each KD run {a['kd_steps']} steps: CPU-sized choices, "
        "stated so the rows are read as a comparison between methods under one procedure, not as converged results.",
        "",
    ]
    return "\n".join(lines)
