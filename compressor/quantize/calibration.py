"""Activation ranges for static INT8: observe first (this module), then change the graph (static.py).

The samples come from the recipe's ``data.calibration`` file when it is set, else from a seeded
sample of the training split. Batches are tokenized as they are needed and handed to ONNX
Runtime's calibrator one at a time: min/max ranges and histograms are merged after every batch,
so memory holds one batch's activations, never the whole calibration set's.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from compressor.core.errors import CompressorError
from compressor.core.rundir import quiet_libraries
from compressor.pipeline.context import RunContext

log = logging.getLogger("compressor")

# histogram sizes: ORT's entropy default (128 bins for 128 quantized bins) leaves it no threshold to
# choose; its KL search is a Python loop per candidate threshold, so 512 bins keeps it to seconds
ENTROPY_BINS, ENTROPY_QUANTIZED_BINS, PERCENTILE_BINS = 512, 128, 2048
METHOD_NAMES = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}  # ORT's CalibrationMethod


def calibration_split(ctx: RunContext, samples: int, field: str):
    """(encoded samples, description) for calibration: ``data.calibration`` if set, else ``samples`` rows of train.

    ``field`` is the recipe path of ``calibration_samples``, for errors that point at its line.
    """
    from compressor import data as D

    cfg = ctx.recipe.data
    if cfg.calibration:
        enc, where = _read_calibration_file(ctx), "data.calibration"
    else:
        enc, where = ctx.encoded["train"], "data.train"
    if len(enc) == 0:
        raise ctx.recipe.error("data.calibration" if cfg.calibration else "data.train", "calibration data is empty")
    if len(enc) < samples:
        raise ctx.recipe.error(
            field,
            f"{where} holds {len(enc)} samples, fewer than calibration_samples={samples}; "
            "lower calibration_samples or give more calibration data",
        )
    rng = np.random.default_rng(ctx.seed)
    idx = np.sort(rng.choice(len(enc), size=samples, replace=False)) if samples < len(enc) else np.arange(len(enc))
    return D.Encoded([enc.features[i] for i in idx], None), where


def _read_calibration_file(ctx: RunContext):
    from compressor import data as D

    cfg = ctx.recipe.data
    try:
        if ctx.task == "causal-lm":
            text = D.lm_text(cfg.calibration, cfg, ctx.recipe_dir, "data.calibration")
            return D.encode_blocks(D.lm_blocks(text, ctx.tokenizer, cfg.max_length))
        split = D.Split(D.table_texts(cfg.calibration, cfg, ctx.recipe_dir, "data.calibration"))
        return D.encode_split(split, ctx.tokenizer, cfg.max_length)
    except CompressorError as e:  # point at the recipe line that names the file
        raise ctx.recipe.error("data.calibration", str(e)) from None


def feeds(batches: Iterable[dict], graph_inputs: list) -> Iterator[dict[str, np.ndarray]]:
    """ONNX feeds by input name from loader batches, from the graph's signature (compressor/arch/signature.py): token
    types default to zeros; a causal LM's cached graph gets positions from the mask and an empty cache."""
    from compressor.arch.signature import session_signature

    sig = session_signature(graph_inputs)
    for batch in batches:
        yield sig.feed(batch)


class _One:
    """A CalibrationDataReader over one feed (ORT's calibrators take readers)."""

    def __init__(self, feed: dict):
        self.feed = feed

    def get_next(self):
        feed, self.feed = self.feed, None
        return feed


def _calibrator_class(method: str):
    from onnxruntime.quantization.calibrate import EntropyCalibrater, MinMaxCalibrater, PercentileCalibrater

    base = {"minmax": MinMaxCalibrater, "percentile": PercentileCalibrater, "entropy": EntropyCalibrater}[method]

    class Restricted(base):  # calibrate the named tensors only (inputs of the nodes we quantize)
        tensors: set[str] = set()

        def select_tensors_to_calibrate(self, model):
            found, value_infos = super().select_tensors_to_calibrate(model)
            return found & self.tensors, value_infos

    return Restricted


def calibrate(
    model_path: Path,
    tensors: set[str],
    batches: Iterable[dict],
    method: str,
    percentile: float = 99.99,
    symmetric: bool = False,
    work_dir: Path | None = None,
    threads: int | None = None,
):
    """Ranges of ``tensors`` over ``batches`` (loader batches), one batch in memory at a time.

    Returns ORT's ``TensorsData`` (tensor name -> range), ready for ``save_tensors_data``.
    """
    from onnxruntime.quantization.calibrate import CalibrationMethod, TensorsData

    from compressor.onnx.session import make_session

    if not tensors:  # e.g. only embedding tables to quantize: their ranges come from the weights
        return TensorsData(getattr(CalibrationMethod, METHOD_NAMES[method]), {})
    work_dir = Path(work_dir or model_path.parent)
    cls = _calibrator_class(method)
    cls.tensors = set(tensors)
    kwargs: dict = {"symmetric": symmetric}
    if method == "percentile":
        kwargs.update(num_bins=PERCENTILE_BINS, percentile=percentile)
    elif method == "entropy":
        kwargs.update(num_bins=ENTROPY_BINS, num_quantized_bins=ENTROPY_QUANTIZED_BINS)
    n_batches = n_samples = 0
    with warnings.catch_warnings(), quiet_libraries():
        warnings.simplefilter("ignore")
        cal = cls(model_path, None, str(work_dir / "augmented.onnx"), **kwargs)
        cal.augment_graph()
        # as ORT builds it (no graph optimization), but with our thread count and spinning off
        cal.infer_session = make_session(cal.augmented_model_path, threads, optimization="none")
        for feed in feeds(batches, cal.infer_session.get_inputs()):
            cal.collect_data(_One(feed))  # merges this batch into the running ranges / histograms
            n_batches += 1
            n_samples += len(feed["input_ids"])
        if n_batches == 0:
            raise CompressorError("calibration: no batches")
        ranges = cal.compute_data()
    del cal
    (work_dir / "augmented.onnx").unlink(missing_ok=True)
    log.info("calibrated %d tensors (%s) on %d samples in %d batches", len(ranges.data), method, n_samples, n_batches)
    return ranges


def range_table(ranges) -> dict[str, tuple[float, float]]:
    """tensor -> (low, high) as plain floats, from ORT's TensorsData."""
    out = {}
    for name, v in ranges.items():
        lo, hi = v.range_value if hasattr(v, "range_value") else v[:2]
        out[name] = (float(np.min(lo)), float(np.max(hi)))
    return out
