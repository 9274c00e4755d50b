"""A real ONNX detector the tests build themselves, for the scenes of trainer/streams/scene.py (one object
per horizontal lane over a fixed background): per lane, the pixels far from the known background, their
extent as a box. Output [lanes, 6] rows x0, y0, x1, y1, score, class in the input's pixels (the
`xyxy_score_class` layout); a lane with nothing in it scores 0."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sources.detection.onnx_detector import letterbox


def letterboxed_background(frames: list[np.ndarray], size: int) -> np.ndarray:
    """The scene's background as the detector sees it [1,3,size,size]: the median of the frames (the
    objects move on)."""
    return np.median(np.concatenate([letterbox(f, size)[0] for f in frames]), axis=0, keepdims=True).astype(np.float32)


def lane_bands(width: int, height: int, lanes: int, size: int) -> list[tuple[int, int]]:
    """Each lane's rows [r0, r1) in the letterboxed input."""
    scale = min(size / width, size / height)
    pad_y = (size - round(height * scale)) // 2
    edges = [pad_y + round(k * (height // lanes) * scale) for k in range(lanes + 1)]
    return list(zip(edges[:-1], edges[1:]))


def lane_detector_onnx(path: Path, background: np.ndarray, bands: list[tuple[int, int]],
                       threshold: float = 0.3, class_id: int = 0) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    size = background.shape[-1]
    nodes: list = []
    inits = [numpy_helper.from_array(background.astype(np.float32), "background"),
             numpy_helper.from_array(np.array([1], np.int64), "channel_axis"),
             numpy_helper.from_array(np.array(threshold, np.float32), "threshold"),
             numpy_helper.from_array(np.array([[float(class_id)]], np.float32), "class_id"),
             numpy_helper.from_array(np.array([1], np.int64), "one"),
             numpy_helper.from_array(np.array([1], np.int64), "axis_rows")]
    nodes += [helper.make_node("Sub", ["images", "background"], ["diff"]),
              helper.make_node("Abs", ["diff"], ["absdiff"]),
              helper.make_node("ReduceSum", ["absdiff", "channel_axis"], ["distance"], keepdims=0),  # [1,S,S]
              helper.make_node("Greater", ["distance", "threshold"], ["far"]),
              helper.make_node("Cast", ["far"], ["mask"], to=TensorProto.FLOAT)]
    rows_out = []
    for k, (r0, r1) in enumerate(bands):
        p = f"lane{k}_"
        inits += [numpy_helper.from_array(np.array([r0], np.int64), p + "start"),
                  numpy_helper.from_array(np.array([r1], np.int64), p + "end"),
                  numpy_helper.from_array(np.array([[r0]], np.int64), p + "offset")]
        nodes += [
            helper.make_node("Slice", ["mask", p + "start", p + "end", "axis_rows"], [p + "band"]),  # [1,h,S]
            helper.make_node("ReduceMax", [p + "band"], [p + "cols"], axes=[1], keepdims=0),  # [1,S]
            helper.make_node("ReduceMax", [p + "band"], [p + "rows"], axes=[2], keepdims=0),  # [1,h]
            helper.make_node("ArgMax", [p + "cols"], [p + "x0"], axis=1, keepdims=1),
            helper.make_node("ArgMax", [p + "cols"], [p + "xl"], axis=1, keepdims=1, select_last_index=1),
            helper.make_node("ArgMax", [p + "rows"], [p + "yr0"], axis=1, keepdims=1),
            helper.make_node("ArgMax", [p + "rows"], [p + "yrl"], axis=1, keepdims=1, select_last_index=1),
            helper.make_node("Add", [p + "xl", "one"], [p + "x1"]),
            helper.make_node("Add", [p + "yr0", p + "offset"], [p + "y0"]),
            helper.make_node("Add", [p + "yrl", p + "offset"], [p + "yl"]),
            helper.make_node("Add", [p + "yl", "one"], [p + "y1"]),
            helper.make_node("Concat", [p + "x0", p + "y0", p + "x1", p + "y1"], [p + "box_i"], axis=1),
            helper.make_node("Cast", [p + "box_i"], [p + "box"], to=TensorProto.FLOAT),
            helper.make_node("ReduceMax", [p + "cols"], [p + "score"], axes=[1], keepdims=1),  # [1,1]
            helper.make_node("Concat", [p + "box", p + "score", "class_id"], [p + "row"], axis=1),  # [1,6]
        ]
        rows_out.append(p + "row")
    nodes.append(helper.make_node("Concat", rows_out, ["detections"], axis=0))
    graph = helper.make_graph(
        nodes, "lane_detector",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
        [helper.make_tensor_value_info("detections", TensorProto.FLOAT, [len(bands), 6])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
