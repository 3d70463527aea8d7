"""ONNX Runtime sessions configured the one way we time and evaluate them."""

from __future__ import annotations

from pathlib import Path

from compressor.core.errors import ExportError

GPU_PROVIDERS = {"cuda": ["CUDAExecutionProvider"], "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider"]}


def providers_for(device: str) -> list[str]:
    """ONNX Runtime execution providers for ``device``: cpu, cuda (CUDA EP) or tensorrt (TensorRT EP, CUDA EP behind it)."""
    import onnxruntime as ort

    if device in GPU_PROVIDERS:
        if hasattr(ort, "preload_dlls"):  # onnxruntime-gpu >= 1.21: CUDA / cuDNN from the nvidia-* wheels torch installed
            try:
                ort.preload_dlls()
            except Exception:  # libraries on the system path instead: the session below still finds them
                pass
        wanted = GPU_PROVIDERS[device][0]
        if wanted not in ort.get_available_providers():
            raise ExportError(
                f"{wanted} is not available (install compressor[gpu] on a CUDA machine"
                + (", with TensorRT" if device == "tensorrt" else "")
                + ")"
            )
        return GPU_PROVIDERS[device] + ["CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


OPTIMIZATION = {
    "none": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def session_options(
    threads: int | None = None,
    optimization: str = "all",
    optimized_model_path: Path | str | None = None,
    config: dict[str, str] | None = None,
):
    """The one place ONNX Runtime ``SessionOptions`` are built: ``threads`` intra-op threads (one inter-op thread),
    idle-thread spinning off (so several live sessions do not steal cores), warnings only; ``optimization`` is the
    graph optimization level (none, basic, extended, all); ``optimized_model_path`` makes ORT save the graph it runs;
    ``config`` adds session config entries."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPTIMIZATION[optimization])
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
    if optimized_model_path is not None:
        opts.optimized_model_filepath = str(optimized_model_path)
    for key, value in (config or {}).items():
        opts.add_session_config_entry(key, value)
    return opts


def make_session(
    path: Path | str | bytes,
    threads: int | None = None,
    device: str = "cpu",
    optimization: str = "all",
    optimized_model_path: Path | str | None = None,
    config: dict[str, str] | None = None,
):
    """A session on ``device`` with ``session_options``; ``path`` may also be a serialized model (bytes)."""
    import onnxruntime as ort

    if not isinstance(path, bytes) and not Path(path).is_file():
        raise ExportError(f"{path}: no such ONNX file" if not Path(path).exists() else f"{path}: not a file")
    opts = session_options(threads, optimization, optimized_model_path, config)
    where = "the serialized model" if isinstance(path, bytes) else path
    try:
        session = ort.InferenceSession(
            path if isinstance(path, bytes) else str(path), sess_options=opts, providers=providers_for(device)
        )
    except ExportError:
        raise
    except Exception as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"{where}: ONNX Runtime cannot load it: {msg[:300]}") from None
    check_provider(session, device)
    return session


def check_provider(session, device: str) -> None:
    """Refuse a session that silently fell back: ORT lists the TensorRT EP wherever its plugin file exists, and when
    TensorRT's own libraries are missing (libnvinfer) it runs the graph on the CUDA EP instead — seen on an H200, where
    the report then showed CUDA EP timings under 'tensorrt'."""
    if device not in GPU_PROVIDERS:
        return
    wanted, running = GPU_PROVIDERS[device][0], session.get_providers()
    if not running or running[0] != wanted:
        hint = " (TensorRT's libraries, e.g. libnvinfer, are not installed)" if device == "tensorrt" else ""
        raise ExportError(f"{wanted} did not load{hint}; ONNX Runtime fell back to {', '.join(running)}")
