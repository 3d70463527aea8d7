"""ONNX files named on the command line (``compressor eval`` / ``bench``): checked to hold a model before anything else
is looked for, their tokenizer folder found beside them, their vocabulary read from the graph when no config says."""

from __future__ import annotations

from pathlib import Path

from compressor.core.errors import ModelError


def onnx_file(path: Path) -> Path:
    """An existing file that really holds an ONNX model (checked before anything else is looked for)."""
    if not path.is_file():
        raise ModelError(f"{path}: no such ONNX file" + (" (it is a directory)" if path.is_dir() else ""))
    readable_onnx(path)
    return path


def readable_onnx(path: Path) -> None:
    """A ModelError (one line) for a file that is no ONNX model (truncated, corrupt, another format)."""
    import onnx

    try:
        onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError, OSError, ...
        raise ModelError(
            f"{path}: not a readable ONNX model ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
        ) from None


def companion(artifact: Path, explicit: Path | None) -> Path | None:
    """The folder with the tokenizer (and config.json) that belongs to an ONNX file."""
    from compressor.models import TOKENIZER_FILES

    if explicit is not None:
        return explicit
    for d in (artifact.parent, artifact.parent.parent / "model", artifact.parent.parent):
        if d.is_dir() and any((d / f).is_file() for f in TOKENIZER_FILES):
            return d
    return None


def onnx_vocab(path: Path, home: Path | None) -> int | None:
    """The vocabulary size for synthetic inputs: config.json beside the file, else the word-embedding table."""
    if home is not None and (home / "config.json").is_file():
        import json

        cfg = json.loads((home / "config.json").read_text())
        if cfg.get("vocab_size"):
            return int(cfg["vocab_size"])
    import onnx

    from compressor.arch.signature import TOKEN_IDS

    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name: list(i.dims) for i in graph.initializer}
    for node in graph.node:  # the table that the token ids index into
        if TOKEN_IDS in node.input:
            data = node.input[2] if node.op_type == "EmbedLayerNormalization" else node.input[0]
            if len(inits.get(data, [])) == 2 and data != TOKEN_IDS:
                return int(inits[data][0])
    for name, dims in inits.items():
        if len(dims) == 2 and any(w in name for w in ("word_embeddings", "wte", "embed_tokens")):
            return int(dims[0])
    return None
