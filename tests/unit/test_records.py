"""Typed records (core/records.py): written and read through pydantic models with a schema version."""

from __future__ import annotations

import json

import numpy as np
import pytest

from compressor.core.errors import RecordError
from compressor.core.records import (
    SCHEMA_VERSION,
    Metrics,
    Provenance,
    StageRecord,
    read_dict,
    read_metrics,
    read_record,
    write_metrics,
    write_record,
)

MINIMAL = {
    "name": "r",
    "task": "sequence-classification",
    "model": "m",
    "seed": 0,
    "device": "cpu",
    "primary_metric": {"name": "accuracy", "higher_is_better": True},
    "artifacts": {
        "pytorch": {
            "path": "model",
            "runtime": "torch",
            "params": 10,
            "size_bytes": 40,
            "gzip_bytes": 30,
            "metrics": {"dev": {"accuracy": 0.5}},
            "bench": [],
        }
    },
    "stages": [{"stage": "prune", "seconds": 1.0, "prune": {"type": "unstructured", "sparsity": 0.5}}],
}


def test_metrics_round_trip_keeps_every_key_and_adds_the_version(tmp_path):
    written = write_metrics(tmp_path / "metrics.json", {**MINIMAL, "custom": {"kept": [1, 2]}})
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk == written and list(on_disk)[0] == "schema_version" and on_disk["schema_version"] == SCHEMA_VERSION
    assert on_disk["custom"] == {"kept": [1, 2]}  # keys the model does not name are kept
    assert on_disk["stages"][0]["prune"] == {"type": "unstructured", "sparsity": 0.5}
    assert "labels" not in on_disk and "plan" not in on_disk  # defaults are not added
    assert read_metrics(tmp_path / "metrics.json") == on_disk


def test_numpy_values_and_paths_are_written_as_json(tmp_path):
    rec = json.loads(json.dumps(MINIMAL))
    rec["artifacts"]["pytorch"]["params"] = np.int64(10)
    rec["artifacts"]["pytorch"]["metrics"]["dev"]["accuracy"] = np.float32(0.5)
    rec["where"] = tmp_path
    out = write_metrics(tmp_path / "metrics.json", rec)
    assert out["artifacts"]["pytorch"]["params"] == 10 and out["where"] == str(tmp_path)


def test_an_unversioned_file_reads_as_today(tmp_path):
    (tmp_path / "metrics.json").write_text(json.dumps(MINIMAL))
    assert read_metrics(tmp_path / "metrics.json") == {"schema_version": SCHEMA_VERSION, **MINIMAL}


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda m: m.update(schema_version=SCHEMA_VERSION + 1),
            f"metrics file of schema_version {SCHEMA_VERSION + 1}; this compressor reads up to {SCHEMA_VERSION}",
        ),
        (lambda m: m.update(schema_version="one"), "schema_version must be a whole number (got 'one')"),
        (lambda m: m["artifacts"]["pytorch"].update(size_bytes=[1]), "malformed metrics file: artifacts.pytorch.size_bytes: "),
        (lambda m: m["primary_metric"].pop("name"), "malformed metrics file: primary_metric.name: field required"),
        (lambda m: m["stages"][0].update(history=1.5), "malformed metrics file: stages.0.history: "),
        (lambda m: m.update(stages=[True]), "malformed metrics file: stages.0: "),
    ],
)
def test_a_bad_or_newer_metrics_file_fails_with_one_line(tmp_path, change, message):
    m = json.loads(json.dumps(MINIMAL))
    change(m)
    (tmp_path / "metrics.json").write_text(json.dumps(m))
    with pytest.raises(RecordError) as e:
        read_metrics(tmp_path / "metrics.json")
    text = str(e.value)
    assert "\n" not in text and text.startswith(f"{tmp_path / 'metrics.json'}: ") and message in text


def test_not_json_or_not_an_object(tmp_path):
    (tmp_path / "a.json").write_text('{"artifacts": ')
    with pytest.raises(RecordError, match="a.json: not valid JSON"):
        read_metrics(tmp_path / "a.json")
    (tmp_path / "b.json").write_text("[1, 2]")
    with pytest.raises(RecordError, match=r"b.json: not a compressor metrics file \(a JSON list, not an object\)"):
        read_metrics(tmp_path / "b.json")


def test_a_malformed_record_is_never_written(tmp_path):
    bad = {**MINIMAL, "seed": "seven"}
    with pytest.raises(RecordError, match="seed"):
        write_metrics(tmp_path / "metrics.json", bad)
    assert not (tmp_path / "metrics.json").exists()


def test_provenance_and_stage_records(tmp_path):
    prov = write_record(
        tmp_path / "model.onnx.json",
        Provenance,
        {
            "artifact": "onnx",
            "file": "model.onnx",
            "created": "2026-01-01T00:00:00Z",
            "versions": {"onnx": "1.17"},
            "exporter": "dynamo",
            "opset": 18,
            "parity": {"max_abs_diff": 1e-6},
        },
    )
    assert read_dict(tmp_path / "model.onnx.json", Provenance) == prov and prov["schema_version"] == SCHEMA_VERSION
    assert read_record(tmp_path / "model.onnx.json", Provenance).opset == 18
    done = {
        "hash": "abc",
        "result": {"stage": "export", "seconds": 2.0, "exporter": "dynamo"},
        "model": None,
        "artifacts": {"onnx": "onnx/model.onnx"},
        "provenance": {"onnx": prov},
    }
    write_record(tmp_path / "done.json", StageRecord, done)
    assert read_dict(tmp_path / "done.json", StageRecord)["result"]["exporter"] == "dynamo"
    with pytest.raises(RecordError, match=r"done.json: malformed stage record: result.stage: field required"):
        write_record(tmp_path / "done.json", StageRecord, {**done, "result": {"seconds": 1}})
    assert Metrics.model_json_schema()["properties"]["schema_version"]["default"] == SCHEMA_VERSION
