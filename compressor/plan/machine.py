"""The machine ``plan`` advises for, and what the benchmark will measure on it."""

from __future__ import annotations

from typing import Any

from compressor.plan.base import Advice


def machine_info() -> dict[str, Any]:
    import platform

    from compressor.measure.bench.runner import fingerprint

    info = fingerprint()
    info["arch"] = platform.machine().lower()
    try:
        import onnxruntime

        info["ort_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        info["ort_providers"] = []
    return info


def describe_machine(machine: dict[str, Any]) -> str:
    flags = ", ".join(machine.get("cpu_flags", [])) or "no AVX2/AVX-512/VNNI/AMX"
    gpu = machine.get("gpu") or "no CUDA GPU"
    return f"{machine.get('cpu') or '?'}, {machine.get('cores')} cores ({flags}); {gpu}"


def bench_rows(b, machine: dict[str, Any]) -> list[Advice]:
    """One row per benchmark device of the recipe's ``bench:`` section."""
    if not b.enabled:
        return [Advice("bench", "off", "bench.enabled: false: no latency numbers")]
    gpu, rows = machine.get("gpu"), []
    for dev in b.devices:
        if dev == "cpu":
            threads = b.threads or machine.get("cores")
            rows.append(
                Advice(
                    "bench cpu",
                    "measured",
                    f"batch {b.batch_sizes} × seq {b.seq_lengths}, {b.iterations} "
                    f"iterations, {threads} threads on {machine.get('cpu') or 'this CPU'}",
                )
            )
        elif not gpu:
            rows.append(Advice(f"bench {dev}", "skipped", "no CUDA GPU visible: the report will have CPU rows only"))
        elif dev == "tensorrt":
            trt = "TensorrtExecutionProvider" in machine.get("ort_providers", [])
            rows.append(
                Advice(
                    "bench tensorrt",
                    "measured" if trt else "skipped",
                    f"on {gpu}: the fp32 ONNX graphs on ORT's TensorRT EP"
                    if trt
                    else "onnxruntime has no TensorRT EP here (install onnxruntime-gpu with TensorRT)",
                )
            )
        else:
            ep = "CUDAExecutionProvider" in machine.get("ort_providers", [])
            rows.append(
                Advice(
                    "bench cuda",
                    "measured",
                    f"on {gpu}: PyTorch"
                    + (", ONNX fp32 (CUDA EP)" if ep else "; ONNX skipped (onnxruntime has no CUDA EP: install compressor[gpu])")
                    + "; INT8 stays on CPU",
                )
            )
    return rows
