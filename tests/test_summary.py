from __future__ import annotations

from pathlib import Path

from catdog.config import load_config
from catdog.summary import summarize_config

ARTICLE = Path(__file__).resolve().parents[1] / "configs" / "article.yaml"


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
