from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from conftest import png_size

from catdog.cli import main
from catdog.config import load_config
from catdog.summary import summarize_config

ARTICLE = Path(__file__).resolve().parents[1] / "configs" / "article.yaml"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_article_shapes_and_parameter_counts():
    s = summarize_config(load_config(ARTICLE))
    rows = {r.name: r for r in s.rows}
    assert rows["conv"].output_shape == "296×296×10" and rows["conv"].params == 760
    assert rows["conv"].formula == "(300-5+2·0)/1+1 = 296"
    assert rows["pool"].output_shape == "148×148×10" and rows["pool"].formula == "⌊(296-2+2·0)/2⌋+1 = 148"
    assert rows["flatten"].output_shape == "219,040"
    assert rows["output"].params == 438_082
    assert (s.total, s.trainable, s.non_trainable) == (438_842, 438_842, 0)
    text = s.table()
    for expected in ("296×296×10", "148×148×10", "219,040", "trainable params:     438,842"):
        assert expected in text
    assert "270,000×876,160 + 876,160 = 236,564,076,160 parameters" in text


def test_sigmoid_head_and_same_padding():
    s = summarize_config(load_config(ARTICLE, ["model.head=sigmoid"]))
    assert s.trainable == 219_801
    same = summarize_config(load_config(ARTICLE, ["model.padding=same", "model.strides=2"]))
    conv = next(r for r in same.rows if r.name == "conv")
    assert conv.output_shape == "150×150×10" and conv.formula == "⌊(300-5+2·1.5)/2⌋+1 = 150"


def test_summary_json_gives_shapes_as_lists_and_each_layer_s_inputs():
    import json

    from click.testing import CliRunner

    from catdog.cli import main

    result = CliRunner().invoke(main, ["summary", "-c", str(ARTICLE), "--json"])
    assert result.exit_code == 0, result.output
    layers = {layer["name"]: layer for layer in json.loads(result.stdout)["layers"]}
    assert layers["image"]["output_shape"] == [300, 300, 3] and layers["image"]["inputs"] == []
    assert layers["conv"]["output_shape"] == [296, 296, 10] and layers["conv"]["inputs"] == ["rescale"]
    assert layers["flatten"]["output_shape"] == [219_040]
    assert layers["output"] == {"name": "output", "type": "Dense", "output_shape": [2], "params": 438_082,
                                "formula": "", "inputs": ["flatten"]}


def test_a_resnet_s_rows_name_the_skip_connection_and_the_projection():
    s = summarize_config(load_config(None, ["model.name=resnet", "data.image_size=32",
                                            "model.blocks=[{filters: 8}, {filters: 16}]"]))
    inputs = {r.name: r.inputs for r in s.rows}
    # Same width: the unit's input goes straight to the sum.
    assert inputs["block1_unit1_add"] == ["stem_act", "block1_unit1_b_bn"]
    # Wider: a 1x1 projection on the shortcut, fed from the same input as the main path.
    assert inputs["block2_unit1_proj_conv"] == ["block1_pool"] == inputs["block2_unit1_a_conv"]
    assert inputs["block2_unit1_add"] == ["block2_unit1_proj_bn", "block2_unit1_b_bn"]
    assert {r.name: r.shape for r in s.rows}["block2_unit1_add"] == [8, 8, 16]


def test_summary_diagram(tmp_path):
    path = tmp_path / "model.png"
    result = invoke("summary", "--set", "data.image_size=32", "--diagram", path)
    assert result.exit_code == 0, result.output
    assert f"diagram: {path}" in result.output
    width, height = png_size(path)
    assert width == 700 and height > 400
    again = invoke("summary", "--set", "data.image_size=32", "--diagram", path)
    assert again.exit_code == 1 and "already exists; pick another path" in again.output


def test_summary_diagram_of_a_resnet_draws_its_projection_as_a_branch(tmp_path):
    path = tmp_path / "resnet.png"
    result = invoke("summary", "--set", "model.name=resnet", "--set", "data.image_size=32",
                    "--set", "model.blocks=[{filters: 8}, {filters: 16}]", "--diagram", path)
    assert result.exit_code == 0, result.output
    # One column for the main path, one for block2's projection; 23 levels (25 layers, 2 beside).
    assert png_size(path) == (1170, round(100 * (0.9 + 0.85 * 23 + 0.2)))
