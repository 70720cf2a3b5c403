"""Rewrites of an exported ONNX graph that make ONNX Runtime faster and compute the same function.

tf2onnx runs a Keras (NHWC) network in ONNX's NCHW layout and puts a Transpose back to NHWC
before each Flatten, so that the flattened order matches the Dense kernel's rows. For the
article's head that Transpose moves the whole pooled map (148x148x10 per photo) on every call.
Permuting the kernel's rows once, at export, lets the Reshape flatten the NCHW map directly.
`catdog.export` checks the rewritten artifact against Keras like any other (docs/speed-serving.md).

onnx is imported by the caller (catdog.export), which holds the loaded model.
"""

from __future__ import annotations

from typing import Any

# The Transpose tf2onnx puts before a Flatten: NCHW back to NHWC.
_TO_NHWC = [0, 2, 3, 1]


def flatten_in_nchw(model: Any) -> int:
    """Drop each NCHW->NHWC Transpose that only feeds Reshape -> MatMul with a constant kernel,
    permuting the kernel's rows to the NCHW order instead. Returns how many were dropped.

    `model` is an onnx.ModelProto, changed in place.
    """
    import onnx
    from onnx import numpy_helper

    graph = model.graph
    constants = {t.name: t for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    users: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    shapes = None
    dropped = 0
    for reshape in [n for n in graph.node if n.op_type == "Reshape"]:
        transpose = producer.get(reshape.input[0])
        after = users.get(reshape.output[0], [])
        if (transpose is None or transpose.op_type != "Transpose" or len(users[transpose.output[0]]) != 1
                or len(after) != 1 or after[0].op_type != "MatMul" or after[0].input[1] not in constants
                or len(users[after[0].input[1]]) != 1):
            continue
        perm = next((list(a.ints) for a in transpose.attribute if a.name == "perm"), None)
        if perm != _TO_NHWC:
            continue
        if shapes is None:
            inferred = onnx.shape_inference.infer_shapes(model).graph
            shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
                      for v in [*inferred.value_info, *inferred.input, *inferred.output]}
        dims = shapes.get(transpose.input[0], [])
        kernel = constants[after[0].input[1]]
        weights = numpy_helper.to_array(kernel)
        if len(dims) != 4 or not all(dims[1:]) or weights.ndim != 2 or weights.shape[0] != dims[1] * dims[2] * dims[3]:
            continue
        _, channels, height, width = dims
        rows = weights.reshape(height, width, channels, -1).transpose(2, 0, 1, 3).reshape(weights.shape)
        kernel.CopyFrom(numpy_helper.from_array(rows, kernel.name))
        reshape.input[0] = transpose.input[0]
        graph.node.remove(transpose)
        dropped += 1
    return dropped
