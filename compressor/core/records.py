"""Typed records: metrics.json, the provenance record beside each ONNX artifact, and stage records (done.json).

Pydantic v2 models with a ``schema_version``. Every writer goes through ``write_record`` and every reader through
``read_record`` (or ``read_metrics``): a record of a newer schema, a file that is not JSON and a value of the wrong
type each fail with one line naming the file and the field. Records written before versioning (no
``schema_version``) read as version 0: the keys are the same.

The models type the keys the report, ``compare`` and ``--resume`` read; stage- and artifact-specific details
(``prune``, ``budget``, ``layers``, ...) are kept as they come (``extra="allow"``) and written back unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from compressor.core.errors import RecordError
from compressor.core.rundir import _json_default, atomic_write_text

SCHEMA_VERSION = 1


class Record(BaseModel):
    model_config = ConfigDict(extra="allow")


class Versioned(Record):
    schema_version: int = SCHEMA_VERSION


class BenchRow(Record):
    """One timed shape of one artifact (``measure/bench``)."""

    batch: int
    seq: int
    device: str
    p50_ms: float
    runtime: str | None = None
    threads: int | None = None
    round_p50_ms: list[float] | None = None
    throughput_per_s: float | None = None


class GenerationRow(Record):
    """Generation speed of one causal-LM artifact at one batch size (``measure/run_generation.py``)."""

    batch: int
    prompt: int
    new_tokens: int
    prefill_ms: float
    decode_tokens_per_s: float
    decode_ms_per_token: float | None = None
    peak_rss_mb: float | None = None
    runtime: str | None = None
    repeats: int | None = None
    threads: int | None = None


class ArtifactRecord(Record):
    """An artifact of the run as measured: where it is, how big, its metrics per split and its latencies."""

    path: str
    runtime: str
    params: int
    size_bytes: int
    gzip_bytes: int
    nonzero_params: int | None = None
    source: str | None = None
    provenance: dict[str, Any] | None = None
    metrics: dict[str, dict[str, Any]] = {}
    bench: list[BenchRow] = []
    generation: list[GenerationRow] = []


class PrimaryMetric(Record):
    name: str
    higher_is_better: bool = True


class StageResult(Record):
    """What a stage reports (its handler's dict, with the stage kind and its time)."""

    stage: str
    seconds: float = 0.0
    history: list[dict[str, Any]] | None = None
    best_dev: float | None = None
    best_step: int | None = None
    selection: dict[str, Any] | None = None
    parity: dict[str, Any] | None = None
    fusions: dict[str, int] | None = None
    exporter: str | None = None
    opset: int | None = None


class PlanRow(Record):
    stage: str
    verdict: str
    why: str = ""


class Metrics(Versioned):
    """metrics.json."""

    name: str
    task: str
    model: str
    seed: int
    device: str
    primary_metric: PrimaryMetric
    artifacts: dict[str, ArtifactRecord]
    labels: list[str] | None = None
    data: dict[str, int] = {}
    data_counts: dict[str, Any] = {}
    duplicates: dict[str, Any] = {}
    stages: list[StageResult] = []
    bench_notes: list[str] = []
    bench_settings: dict[str, Any] = {}
    generation_settings: dict[str, Any] | None = None
    timing_policy: dict[str, Any] | None = None
    fingerprint: dict[str, Any] = {}
    seconds: float | None = None
    plan: list[PlanRow] = []


class Provenance(Versioned):
    """``<artifact>.json`` beside an ONNX file: how it was made (source, exporter, scheme, parity, versions)."""

    artifact: str | None = None
    file: str
    created: str
    versions: dict[str, str] = {}
    parity: dict[str, Any] | None = None
    exporter: str | None = None
    opset: int | None = None


class StageRecord(Versioned):
    """``checkpoints/stage-<i>-<kind>/done.json``: a finished stage, for --resume."""

    hash: str
    result: StageResult
    model: str | None = None
    artifacts: dict[str, str] = {}
    provenance: dict[str, dict[str, Any]] = {}


R = TypeVar("R", bound=Versioned)


def _plain(obj: Any) -> Any:
    """JSON types only (numpy numbers, arrays and paths converted), as the file will hold them."""
    return json.loads(json.dumps(obj, default=_json_default))


def _where(e: ValidationError) -> str:
    err = e.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "(top level)"
    got = repr(err.get("input"))
    return f"{field}: {err['msg'].lower()}" + (f" (got {got[:60]})" if "input" in err and len(got) < 200 else "")


def validate(kind: type[R], data: Any, source: str | Path) -> R:
    """``data`` as a ``kind`` record, or one RecordError line naming ``source`` and the field."""
    if not isinstance(data, dict):
        raise RecordError(f"{source}: not a compressor {_label(kind)} (a JSON {type(data).__name__}, not an object)")
    version = data.get("schema_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise RecordError(f"{source}: schema_version must be a whole number (got {version!r})")
    if version > SCHEMA_VERSION:
        raise RecordError(
            f"{source}: {_label(kind)} of schema_version {version}; this compressor reads up to "
            f"{SCHEMA_VERSION} (upgrade compressor to read it)"
        )
    try:
        return kind.model_validate(data)
    except ValidationError as e:
        raise RecordError(f"{source}: malformed {_label(kind)}: {_where(e)}") from None


def _label(kind: type) -> str:
    return {Metrics: "metrics file", Provenance: "provenance record", StageRecord: "stage record"}.get(kind, kind.__name__)


def to_dict(record: Versioned) -> dict:
    """The record as written: ``schema_version`` first, then the keys it was given (defaults not added)."""
    body = record.model_dump(mode="python", exclude_unset=True, exclude={"schema_version"})
    return {"schema_version": SCHEMA_VERSION, **body}


def write_record(path: Path, kind: type[R], data: dict | R) -> dict:
    """Validate ``data`` as ``kind`` and write it atomically; returns the dict written (what a reader gets back)."""
    record = data if isinstance(data, kind) else validate(kind, _plain(data), path)
    out = to_dict(record)
    atomic_write_text(Path(path), json.dumps(out, indent=2, default=_json_default) + "\n")
    return out


def read_record(path: Path, kind: type[R]) -> R:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RecordError(f"{path}: cannot read it ({e.strerror or e})") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise RecordError(f"{path}: not valid JSON ({e})") from None
    return validate(kind, data, path)


def read_dict(path: Path, kind: type[R]) -> dict:
    """The record as a plain dict (validated; keys as written, ``schema_version`` first)."""
    return to_dict(read_record(path, kind))


def write_metrics(path: Path, results: dict) -> dict:
    return write_record(path, Metrics, results)


def read_metrics(path: Path) -> dict:
    """metrics.json as the dict the report renders (validated; keys as written)."""
    return read_dict(path, Metrics)
