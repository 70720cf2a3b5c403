"""The guarded uses of Keras internals: the version range of the multi-worker patch, the graph walk."""

from __future__ import annotations

import keras
import pytest

from catdog.errors import DistributeError, InspectionError
from catdog.keras_private import check_multi_worker_keras, graph_calls, keras_version, output_layer


def test_keras_version_reads_major_and_minor():
    assert keras_version("3.15.1") == (3, 15)
    assert keras_version("3.10.0.dev2025") == (3, 10)


@pytest.mark.parametrize("version", ["3.8.0", "3.15.1"])
def test_multi_worker_patch_runs_on_the_releases_it_was_written_for(version):
    check_multi_worker_keras(version)


@pytest.mark.parametrize("version", ["3.7.0", "3.16.0", "4.0.0"])
def test_multi_worker_patch_refuses_other_releases_in_one_line(version):
    with pytest.raises(DistributeError) as info:
        check_multi_worker_keras(version)
    assert str(info.value) == (f"train.distribute multi_worker needs Keras 3.8 to 3.15 (catdog works around "
                               f"keras-team/keras#20585 in those); this is Keras {version}")


def test_graph_calls_give_each_layer_its_tensors_in_this_graph():
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3, name="hidden")
    shared = keras.layers.Dense(3, name="shared")
    x = shared(shared(hidden(inputs)))  # called twice: no single answer
    out = keras.layers.Dense(2, name="out")(x)
    model = keras.Model(inputs, out)
    calls = graph_calls(model)
    assert calls[id(hidden)] == (inputs, hidden.output)
    assert id(shared) not in calls
    assert output_layer(model) is model.get_layer("out")


def test_a_graph_catdog_cannot_read_is_one_line():
    class NoHistory:
        outputs = [object()]

    with pytest.raises(InspectionError, match=r"^this Keras \(.+\) keeps a model's graph in a way catdog cannot read"):
        output_layer(NoHistory())
