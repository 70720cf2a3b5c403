"""Layer-by-layer shapes, parameter counts and the article's output-size formula, worked out, and the
model diagram `summary --diagram` draws.

catdog.models (Keras) is imported inside functions: summarising a config builds a model, reading
one does not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from catdog import plots
from catdog.errors import PlotError


@dataclass
class LayerRow:
    name: str
    type: str
    output_shape: str  # for display, e.g. "296×296×10"
    params: int
    formula: str = ""
    # The output shape without the batch axis, e.g. [296, 296, 10] (None where it varies).
    shape: list[int | None] = field(default_factory=list)
    # The layers whose outputs this layer takes in: more than one where branches join (Add).
    inputs: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "output_shape": self.shape, "params": self.params,
                "formula": self.formula, "inputs": self.inputs}


@dataclass
class Summary:
    """What `catdog summary` shows about one model."""

    name: str
    rows: list[LayerRow]
    total: int
    trainable: int
    non_trainable: int
    # Parameters one fully connected layer would need to map the input to the first conv's output.
    comparison: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"model": self.name, "layers": [r.to_dict() for r in self.rows], "total_params": self.total,
                "trainable_params": self.trainable, "non_trainable_params": self.non_trainable,
                "comparison": self.comparison}

    def table(self) -> str:
        w_name = max(5, *(len(r.name) for r in self.rows))
        w_type = max(4, *(len(r.type) for r in self.rows))
        w_shape = max(12, *(len(r.output_shape) for r in self.rows))
        lines = [f"model {self.name}",
                 f"{'layer':<{w_name}}  {'type':<{w_type}}  {'output shape':<{w_shape}}  {'params':>11}  "
                 f"output size (W-F+2P)/S+1"]
        for r in self.rows:
            lines.append(f"{r.name:<{w_name}}  {r.type:<{w_type}}  {r.output_shape:<{w_shape}}  "
                         f"{r.params:>11,}  {r.formula}")
        lines += ["", f"total params:         {self.total:,}", f"trainable params:     {self.trainable:,}",
                  f"non-trainable params: {self.non_trainable:,}"]
        if self.comparison:
            lines += [""] + self.comparison
        return "\n".join(lines)


def _shape(shape) -> str:
    dims = [d for d in shape[1:]]
    return "×".join("?" if d is None else f"{d:,}" for d in dims)


def _count(weights) -> int:
    return int(sum(math.prod(w.shape) for w in weights))


def _size_formula(w_in: int, f: int, s: int, padding: str, w_out: int) -> str:
    """(W - F + 2P)/S + 1 with the numbers of one spatial axis filled in."""
    if padding == "same":
        # Keras pads (out-1)*S + F - W pixels in total, split over both sides.
        total = max((w_out - 1) * s + f - w_in, 0)
        p = f"{total / 2:g}"
    else:
        p = "0"
    expr = f"({w_in}-{f}+2·{p})/{s}+1"
    return f"{expr} = {w_out}" if s == 1 else f"⌊{expr[:-2]}⌋+1 = {w_out}"


def _window(layer) -> tuple[int, int, str] | None:
    """(filter size, stride, padding) along the height axis for conv and pooling layers."""
    cfg = layer.get_config()
    size = cfg.get("kernel_size") or cfg.get("pool_size")
    if size is None:
        return None
    strides = cfg.get("strides") or size
    first = lambda v: v[0] if isinstance(v, (list, tuple)) else v  # noqa: E731
    return int(first(size)), int(first(strides)), cfg.get("padding", "valid")


def _tensor_sources(value, found: list[str]) -> list[str]:
    """The layer names in the keras_history of every serialised tensor inside `value`."""
    if isinstance(value, dict):
        history = (value.get("config", {}).get("keras_history")
                   if value.get("class_name") == "__keras_tensor__" else None)
        if history:
            found.append(history[0])
        else:
            for v in value.values():
                _tensor_sources(v, found)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _tensor_sources(v, found)
    return found


def inbound_layers(model) -> dict[str, list[str]]:
    """Layer name -> the names of the layers feeding it, read from the model's config: the graph
    as Keras serialises it (public API; layer nodes themselves are private). {} when the config
    holds no graph (a Sequential model): each layer then takes the one before it."""
    layers = model.get_config().get("layers", [])
    if not all(isinstance(layer, dict) and "inbound_nodes" in layer for layer in layers):
        return {}
    return {layer["name"]: list(dict.fromkeys(_tensor_sources(layer["inbound_nodes"], [])))
            for layer in layers}


def summarize(model) -> Summary:
    """Rows of name, type, output shape, parameter count and, for conv/pool layers, the size formula."""
    rows: list[LayerRow] = []
    comparison: list[str] = []
    inbound = inbound_layers(model)
    previous: list[str] = []
    for layer in model.layers:
        out_shape = tuple(layer.output.shape)
        formula = ""
        window = _window(layer)
        if window is not None and len(out_shape) == 4:
            in_shape = tuple(layer.input.shape)
            f, s, padding = window
            formula = _size_formula(in_shape[1], f, s, padding, out_shape[1])
            if not comparison and "Conv" in type(layer).__name__ and None not in in_shape[1:] + out_shape[1:]:
                n_in, n_out = math.prod(in_shape[1:]), math.prod(out_shape[1:])
                dense = n_in * n_out + n_out
                conv = _count(layer.weights)
                comparison = [
                    f"why convolutions: {layer.name} maps {_shape(in_shape)} = {n_in:,} inputs to "
                    f"{_shape(out_shape)} = {n_out:,} outputs with {conv:,} parameters;",
                    f"one fully connected layer doing the same would need {n_in:,}×{n_out:,} + {n_out:,} = "
                    f"{dense:,} parameters ({dense / max(conv, 1):,.0f}× as many).",
                ]
        rows.append(LayerRow(layer.name, type(layer).__name__, _shape(out_shape), _count(layer.weights), formula,
                             list(out_shape[1:]), inbound.get(layer.name, previous) if inbound else previous))
        previous = [layer.name]
    trainable = _count(model.trainable_weights)
    non_trainable = _count(model.non_trainable_weights)
    return Summary(model.name, rows, trainable + non_trainable, trainable, non_trainable, comparison)


def summarize_config(config, num_classes: int = 2) -> Summary:
    """The summary of the model a config would build (nothing is trained)."""
    from catdog.models import build_model

    # The architecture is all a summary shows: no ImageNet download for a transfer backbone.
    return summarize(build_model(config, num_classes, pretrained=False))


def summary_diagram(summary: Summary, path: str | Path) -> Path:
    """Draw a model summary as boxes and arrows at `path`, which must not exist yet.

    Raises:
        PlotError: `path` exists (it is the user's file).
    """
    path = Path(path)
    if path.exists():
        raise PlotError(f"--diagram {path} already exists; pick another path")
    rows = [{"name": r.name, "type": r.type, "output_shape": r.output_shape, "params": r.params, "inputs": r.inputs}
            for r in summary.rows]
    title = f"{summary.name}: {len(rows)} layers, {summary.total:,} parameters"
    return plots.model_diagram(rows, path, title=title)
