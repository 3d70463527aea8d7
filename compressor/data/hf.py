"""Hugging Face ``datasets`` as input, read into the same pandas frame a table gives.

- a folder written by ``save_to_disk``: a Dataset, or a DatasetDict whose split is chosen by the recipe field
  (data.train -> train, data.dev -> validation / dev, data.test -> test; or name the split's own sub-folder);
- a folder of data files (csv / json / parquet / arrow / txt), read by ``load_dataset`` (splits from file names),
  with its cache in a temporary folder that is removed afterwards;
- ``hf:NAME`` or ``hf:NAME:CONFIG``: a dataset on the Hub, where the network allows (checked first, so that an
  offline machine gets one line, not a minute of retries).

ClassLabel columns are read as their names, and the names (in id order) are the label order unless the recipe
gives data.labels. Rows are numbered as the dataset indexes them (from 0). ``datasets`` is imported here only.
"""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compressor.core.errors import DataError
from compressor.data.layout import LayoutError

log = logging.getLogger("compressor")

HUB = "hf:"
SPLITS = {"train": ("train",), "dev": ("validation", "dev", "valid"), "test": ("test",), "calibration": ("train",)}
DATA_SUFFIXES = {".csv", ".tsv", ".json", ".jsonl", ".parquet", ".arrow", ".txt"}
TRUE = {"1", "true", "yes", "on"}


@dataclass
class Frame:
    """A dataset split as a pandas frame: ``class_names`` maps each ClassLabel column to its names in id order."""

    df: Any
    name: str
    class_names: dict[str, list[str]] = field(default_factory=dict)
    rows_read: int = 0


def is_hub(spec: str) -> bool:
    return spec.startswith(HUB)


def is_dataset(path: Path) -> bool:
    """A folder (saved dataset or data files) or an .arrow file: read by ``datasets``, not as a table."""
    return path.is_dir() or path.suffix.lower() == ".arrow"


def saved_kind(folder: Path) -> str | None:
    """ "dict" / "dataset" for a folder ``save_to_disk`` wrote, else None."""
    if (folder / "dataset_dict.json").is_file():
        return "dict"
    if (folder / "state.json").is_file() and (folder / "dataset_info.json").is_file():
        return "dataset"
    return None


def _datasets():
    try:
        import datasets
    except ImportError:
        raise DataError(
            "reading Hugging Face datasets needs the 'datasets' package: pip install 'compressor[datasets]'"
        ) from None
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    return datasets


def _field_split(field_name: str) -> str:
    return field_name.rsplit(".", 1)[-1]


def pick_split(obj, where: str, field_name: str):
    """The Dataset a DatasetDict holds for ``field_name`` (data.train -> "train", ...); a Dataset as it is."""
    if not hasattr(obj, "keys"):
        return obj, where
    names = list(obj.keys())
    wanted = SPLITS.get(_field_split(field_name), (_field_split(field_name),))
    for name in wanted:
        if name in names:
            return obj[name], f"{where} (split {name})"
    if len(names) == 1:
        log.info("%s: %s holds one split, '%s': read for %s", field_name, where, names[0], field_name)
        return obj[names[0]], f"{where} (split {names[0]})"
    raise LayoutError(
        field_name,
        f"{where} holds the splits {', '.join(names)}, none named "
        f"{' / '.join(repr(w) for w in wanted)}; name the split's own folder or file",
    )


def to_frame(dataset, where: str) -> Frame:
    """The split as a pandas frame, ClassLabel ids as names (-1, "no label", as a missing value)."""
    df = dataset.to_pandas()
    names: dict[str, list[str]] = {}
    for col, feat in dataset.features.items():
        if type(feat).__name__ == "ClassLabel":
            names[col] = list(feat.names)
            df[col] = [feat.names[i] if i is not None and 0 <= i < len(feat.names) else None for i in df[col]]
    return Frame(df, where, names, len(df))


def _data_files(folder: Path) -> list[Path]:
    return [
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in DATA_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]


def not_a_dataset(folder: Path) -> str | None:
    """Why ``folder`` cannot be read as a dataset, or None."""
    if saved_kind(folder) is None and not _data_files(folder):
        return (
            f"{folder} is a folder but not a saved dataset (no dataset_dict.json or state.json + dataset_info.json "
            f"from save_to_disk) and holds no data files ({', '.join(sorted(DATA_SUFFIXES))})"
        )
    return None


def load_local(path: Path, field_name: str) -> Frame:
    """A saved dataset, a folder of data files, or an .arrow file, for the recipe field ``field_name``."""
    ds = _datasets()
    if path.is_file():
        try:
            return to_frame(ds.Dataset.from_file(str(path)), str(path))
        except Exception as e:  # pyarrow's errors for a file that is not an Arrow stream
            raise DataError(f"{path}: not a readable Arrow dataset file ({type(e).__name__}: {_first_line(e)})") from None
    problem = not_a_dataset(path)
    if problem:
        raise LayoutError(field_name, problem)
    try:
        if saved_kind(path) is not None:
            split, where = pick_split(ds.load_from_disk(str(path)), str(path), field_name)
            return to_frame(split, where)
        with tempfile.TemporaryDirectory(prefix="compressor-datasets-") as cache:
            split, where = pick_split(ds.load_dataset(str(path), cache_dir=cache, keep_in_memory=True), str(path), field_name)
            return to_frame(split, where)
    except DataError:
        raise
    except Exception as e:  # datasets' own errors: unreadable files, mixed formats, a broken save
        raise DataError(f"{path}: cannot read it as a Hugging Face dataset ({type(e).__name__}: {_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else ""


def _offline() -> str | None:
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in TRUE:
            return f"{var} is set"
    return None


def hub_unreachable(timeout: float = 5.0) -> str | None:
    """Why the Hub cannot be reached from here (offline mode, no DNS, no route), or None when a connection opens."""
    import socket
    from urllib.parse import urlparse

    why = _offline()
    if why:
        return f"offline mode: {why}"
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except Exception as e:  # OSError (DNS, refused, timeout), or a sandbox that forbids sockets
        return f"{host}:{port}: {getattr(e, 'strerror', None) or _first_line(e) or type(e).__name__}"
    return None


def parse_hub(spec: str, field_name: str) -> tuple[str, str | None]:
    name, _, config = spec[len(HUB) :].partition(":")
    if not name.strip():
        raise LayoutError(field_name, f"{spec!r}: name a dataset: hf:NAME or hf:NAME:CONFIG")
    return name.strip(), config.strip() or None


def load_hub(spec: str, field_name: str) -> Frame:
    """``hf:NAME[:CONFIG]`` from the Hub (or the local cache in offline mode)."""
    name, config = parse_hub(spec, field_name)
    why = hub_unreachable()
    if why and not why.startswith("offline mode"):
        raise DataError(hub_message(spec, field_name, why))
    ds = _datasets()
    try:
        obj = ds.load_dataset(name, config)
    except ConnectionError as e:
        raise DataError(hub_message(spec, field_name, why or _first_line(e))) from None
    except Exception as e:
        raise DataError(
            f"{field_name}: {spec}: cannot load it from the Hugging Face Hub ({type(e).__name__}: {_first_line(e)})"
        ) from None
    split, where = pick_split(obj, spec, field_name)
    return to_frame(split, where)


def hub_message(spec: str, field_name: str, why: str) -> str:
    return (
        f"{field_name}: {spec}: the Hugging Face Hub is not reachable from this machine ({why}); where it is, run "
        "datasets.load_dataset(...).save_to_disk(FOLDER) and give that folder"
    )
