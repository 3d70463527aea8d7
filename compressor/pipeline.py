"""``compressor run``: a short, linear orchestration over an explicit RunContext."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import yaml

from compressor.context import RunContext
from compressor.errors import CompressorError
from compressor.recipe import load_recipe
from compressor.registry import STAGES
from compressor.rundir import atomic_write_text, prepare_run_dir, replace_dir, tmp_sibling, write_status

log = logging.getLogger("compressor")


def _register_stages() -> None:
    # importing a stage module registers its handlers with STAGES
    import compressor.export.stage  # noqa: F401
    import compressor.quantize.ptq  # noqa: F401
    import compressor.train.finetune  # noqa: F401

    try:
        import compressor.distill.stage  # noqa: F401
    except ImportError:
        pass


def run_dir_for(recipe, recipe_dir: Path, output_dir: str | None = None) -> Path:
    """--output (relative to the current dir), else output.dir (relative to the recipe), else ./runs."""
    if output_dir:
        base = Path(output_dir)
    elif recipe.output.dir:
        base = recipe_dir / Path(recipe.output.dir).expanduser()
    else:
        base = Path("runs")
    return (base / (recipe.output.name or recipe.name)).absolute()


class _LogToFile:
    """log.txt in the run dir (with timings) plus concise console lines."""

    def __init__(self, path: Path, quiet: bool = False):
        self.path, self.quiet = path, quiet

    def __enter__(self):
        from rich.logging import RichHandler

        fmt = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")
        self.file = logging.FileHandler(self.path, encoding="utf-8")
        self.file.setFormatter(fmt)
        self.console = RichHandler(show_path=False, show_time=False, markup=False, rich_tracebacks=False)
        self.console.setLevel(logging.WARNING if self.quiet else logging.INFO)
        log.addHandler(self.file)
        log.addHandler(self.console)
        log.setLevel(logging.INFO)
        log.propagate = False
        return self

    def __exit__(self, *exc):
        for h in (self.file, self.console):
            log.removeHandler(h)
            h.close()


def pick_device(setting: str) -> str:
    from compressor.bench.runner import cuda_available

    if setting == "cuda" and not cuda_available():
        raise CompressorError("device: cuda was asked for but no CUDA GPU is visible")
    if setting == "auto":
        return "cuda" if cuda_available() else "cpu"
    return setting


def build_context(recipe, recipe_dir: Path, run_dir: Path) -> RunContext:
    """Load tokenizer, data and model, and tokenize the splits."""
    from compressor import data as D
    from compressor.models import load_model, load_tokenizer, resolve

    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    ctx = RunContext(recipe=recipe, recipe_dir=recipe_dir, run_dir=run_dir, device=pick_device(recipe.device))
    m = recipe.model
    src = resolve(m.path, recipe_dir, "model.path", must_exist=False)
    t0 = time.perf_counter()
    ctx.tokenizer = load_tokenizer(src, m.trust_remote_code, m.revision)
    if ctx.task == "sequence-classification":
        ctx.dataset = D.load_classification(recipe.data, recipe_dir, recipe.seed, m.num_labels)
        ctx.label_names = ctx.dataset.label_names
        ctx.model = load_model(src, ctx.task, len(ctx.label_names), ctx.label_names, m.trust_remote_code, m.revision)
        ctx.encoded = {k: D.encode_split(s, ctx.tokenizer, recipe.data.max_length) for k, s in ctx.dataset.splits.items()}
    else:
        blocks = D.load_causal_lm(recipe.data, recipe_dir, ctx.tokenizer, recipe.seed)
        ctx.model = load_model(src, ctx.task, trust_remote_code=m.trust_remote_code, revision=m.revision)
        ctx.encoded = {k: D.encode_blocks(b) for k, b in blocks.items()}
    sizes = ", ".join(f"{k} {len(v)}" for k, v in ctx.encoded.items())
    log.info("loaded %s (%s) and data (%s) in %.1fs; device %s", m.path, type(ctx.model).__name__, sizes,
             time.perf_counter() - t0, ctx.device)
    return ctx


def save_model(ctx: RunContext) -> Path:
    final = ctx.run_dir / "model"
    tmp = tmp_sibling(final)
    ctx.model.save_pretrained(tmp, safe_serialization=True)
    ctx.tokenizer.save_pretrained(tmp)
    replace_dir(tmp, final)
    return final


def run(recipe_path: str | Path, overrides: list[str] | None = None, force: bool = False,
        output_dir: str | None = None, quiet: bool = False) -> Path:
    """Run a recipe end to end; return the run directory."""
    from compressor.report.metrics import collect_results, evaluate_artifacts, run_benchmarks
    from compressor.report.markdown import write_report

    recipe, raw = load_recipe(recipe_path, overrides)
    recipe_dir = Path(recipe_path).absolute().parent
    run_dir = run_dir_for(recipe, recipe_dir, output_dir)
    prepare_run_dir(run_dir, force)
    write_status(run_dir, "running")
    atomic_write_text(run_dir / "recipe.yaml", yaml.safe_dump(raw, sort_keys=False))
    _register_stages()
    started = time.time()
    with _LogToFile(run_dir / "log.txt", quiet):
        try:
            log.info("run %s -> %s", recipe_path, run_dir)
            ctx = build_context(recipe, recipe_dir, run_dir)
            for i, (kind, cfg) in enumerate(recipe.stage_list()):
                t0 = time.perf_counter()
                log.info("stage %d: %s", i, kind)
                ctx.stage_path = f"stages.{i}.{kind}"
                result = STAGES.get(cfg)(ctx, cfg) or {}
                ctx.stage_results.append({"stage": kind, "seconds": round(time.perf_counter() - t0, 2), **result})
                log.info("stage %d: %s done in %.1fs", i, kind, time.perf_counter() - t0)
            save_model(ctx)
            evals = evaluate_artifacts(ctx)
            bench = run_benchmarks(ctx)
            results = collect_results(ctx, evals, bench, started)
            write_report(run_dir, results)
            write_status(run_dir, "complete")
            log.info("run complete in %.1fs: %s", time.time() - started, run_dir)
        except KeyboardInterrupt:
            write_status(run_dir, "failed: interrupted")
            raise
        except BaseException as e:
            write_status(run_dir, f"failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
            log.error("run failed: %s", e)
            raise
    return run_dir
