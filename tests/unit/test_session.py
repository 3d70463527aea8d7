"""ONNX Runtime sessions: unreadable models are one-line ExportErrors, not ORT tracebacks."""

from __future__ import annotations

import numpy as np
import pytest

from compressor.core.errors import ExportError
from compressor.onnx.session import make_session


def _tiny_onnx(path):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_a_good_model_runs(tmp_path):
    sess = make_session(_tiny_onnx(tmp_path / "m.onnx"), threads=1)
    (out,) = sess.run(None, {"x": np.array([[-1.0, 2.0]], dtype=np.float32)})
    assert out.tolist() == [[0.0, 2.0]]


@pytest.mark.parametrize(
    "content, words",
    [
        (b"not a protobuf at all" * 3, "ONNX Runtime cannot load it"),
        (b"", "ONNX Runtime cannot load it"),
        (None, "no such ONNX file"),
        ("dir", "not a file"),
    ],
)
def test_unloadable_models(tmp_path, content, words):
    path = tmp_path / "model.onnx"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ExportError) as info:
        make_session(path)
    msg = str(info.value)
    assert msg.startswith(str(path)) and words in msg and "\n" not in msg


def test_missing_external_data(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((2, 2), dtype=np.float32), "w")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g", [x], [y], initializer=[w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "model.onnx"
    onnx.save(
        model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0
    )
    make_session(path)  # fine with its data file
    (tmp_path / "model.onnx.data").unlink()
    with pytest.raises(ExportError, match="cannot load it"):
        make_session(path)


def test_cuda_without_the_provider(tmp_path):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the CUDA provider")
    with pytest.raises(ExportError, match="CUDAExecutionProvider is not available"):
        make_session(_tiny_onnx(tmp_path / "m.onnx"), device="cuda")


def test_a_silent_fallback_from_tensorrt_is_refused(tmp_path, monkeypatch):
    """Seen on an H200 without libnvinfer: ORT lists the TensorRT EP, then runs the graph on the CUDA EP instead."""
    import onnxruntime as ort

    real = ort.InferenceSession

    class FellBack:
        def __init__(self, path, sess_options=None, providers=None):
            assert providers[0] == "TensorrtExecutionProvider"
            self._inner = real(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

        def get_providers(self):
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    monkeypatch.setattr(
        ort, "get_available_providers", lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    monkeypatch.setattr(ort, "InferenceSession", FellBack)
    monkeypatch.setattr(ort, "preload_dlls", lambda *a, **k: None, raising=False)
    with pytest.raises(
        ExportError, match="TensorrtExecutionProvider did not load.*libnvinfer.*fell back to CUDAExecutionProvider"
    ):
        make_session(_tiny_onnx(tmp_path / "m.onnx"), device="tensorrt")
