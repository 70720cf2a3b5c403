"""Devices, precision and XLA settings, and `catdog info`."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from catdog.cli import main
from catdog.config import load_config
from catdog.devices import (
    Device,
    _capability,
    dtype_policy,
    emulated_bfloat16,
    info,
    jit_enabled,
    resolve_jit_compile,
    resolve_precision,
    training_device,
)

FAST = ["train.epochs=1", "data.image_size=16", "train.batch_size=8"]


def gpu(cc):
    return Device("GPU", "test GPU", 16 * 2**30, cc)


@pytest.mark.parametrize("devices, expected", [
    ([], "float32"),
    ([Device("CPU", "cpu")], "float32"),
    ([gpu((9, 0))], "mixed_bfloat16"),
    ([gpu((8, 0)), gpu((8, 6))], "mixed_bfloat16"),
    ([gpu((7, 5))], "mixed_float16"),
    ([gpu((8, 0)), gpu((7, 0))], "mixed_float16"),  # the oldest GPU decides
    ([gpu((6, 1))], "float32"),
    ([gpu(None)], "float32"),
])
def test_auto_precision_follows_the_gpus(devices, expected):
    assert resolve_precision("auto", devices, flags={"avx2", "fma"}) == expected
    # A CPU's bfloat16 instructions matter only where no GPU trains.
    with_amx = "mixed_bfloat16" if not [d for d in devices if d.kind == "GPU"] else expected
    assert resolve_precision("auto", devices, flags={"amx_bf16", "avx512_bf16"}) == with_amx


@pytest.mark.parametrize("flags, expected", [
    ({"avx512f", "avx512_bf16"}, "mixed_bfloat16"),  # AMD Zen 4, Intel Cooper Lake
    ({"amx_bf16", "amx_tile"}, "mixed_bfloat16"),     # Intel Sapphire Rapids and later
    ({"avx", "avx2", "fma"}, "float32"),              # emulated: about five times slower than float32
    (set(), "float32"),                               # flags unknown (not Linux)
])
def test_auto_precision_on_a_cpu_is_bfloat16_only_where_it_is_native(flags, expected):
    assert resolve_precision("auto", [], flags=flags) == expected


def test_catdog_cpu_flags_stands_in_for_the_cpus_own(monkeypatch):
    monkeypatch.setenv("CATDOG_CPU_FLAGS", "avx2 amx_bf16")
    assert resolve_precision("auto", []) == "mixed_bfloat16"
    monkeypatch.setenv("CATDOG_CPU_FLAGS", "avx2")
    assert resolve_precision("auto", []) == "float32"


def test_explicit_precision_is_kept_whatever_the_device():
    for name in ("float32", "mixed_float16", "mixed_bfloat16"):
        assert resolve_precision(name, [gpu((9, 0))]) == name
        assert resolve_precision(name, []) == name


def test_bfloat16_on_a_cpu_without_bfloat16_instructions_is_flagged():
    assert emulated_bfloat16("mixed_bfloat16", [], flags={"avx2", "fma"})
    assert not emulated_bfloat16("mixed_bfloat16", [], flags={"avx512f", "avx512_bf16"})
    assert not emulated_bfloat16("mixed_bfloat16", [], flags={"amx_bf16"})
    assert not emulated_bfloat16("mixed_bfloat16", [gpu((9, 0))], flags=set())
    assert not emulated_bfloat16("float32", [], flags=set())


def test_jit_compile_setting_and_what_info_reports_on_this_cpu():
    assert resolve_jit_compile("on") is True
    assert resolve_jit_compile("off") is False
    assert resolve_jit_compile("auto") == "auto"
    # The default backend here is TensorFlow on the CPU, where Keras leaves XLA off.
    assert jit_enabled("auto", []) is False
    assert jit_enabled("auto", [gpu((9, 0))]) is True
    assert jit_enabled("on", []) is True


def test_compute_capability_spellings():
    assert _capability("8.6") == (8, 6)
    assert _capability((9, 0)) == (9, 0)
    assert _capability(None) is None
    assert _capability("unknown") is None


def test_dtype_policy_is_restored():
    import keras

    before = keras.config.dtype_policy().name
    with dtype_policy("mixed_bfloat16"):
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == before


def test_info_names_versions_backend_devices_and_settings():
    import keras

    report = info(load_config(None, ["train.precision=mixed_float16", "train.jit_compile=on"]))
    assert report.keras == keras.__version__ and report.backend == "tensorflow"
    assert report.devices[-1].kind == "CPU" and "cores" in report.devices[-1].name
    assert report.precision == "mixed_float16" and report.jit_compile is True
    table = report.table()
    assert "backend" in table and "precision          mixed_float16" in table and "XLA (jit_compile)  on" in table
    assert training_device().startswith("CPU (")


def test_info_reports_xla_off_where_tensorflow_cannot_compile():
    assert info(load_config(None, ["train.jit_compile=on", "model.flip=true"])).jit_compile is True
    # The warp (RandomGeometry) has no XLA kernel in TensorFlow: training runs without XLA.
    assert info(load_config(None, ["train.jit_compile=on", "model.zoom=0.1"])).jit_compile is False


def test_info_command_human_and_json():
    result = CliRunner().invoke(main, ["info"])
    assert result.exit_code == 0 and "keras" in result.output and "precision          float32" in result.output
    data = json.loads(CliRunner().invoke(main, ["info", "--json"]).stdout)
    assert set(data) >= {"catdog", "python", "keras", "backend", "backend_version", "devices", "precision",
                         "jit_compile"}
    assert data["precision"] == "float32" and data["jit_compile"] is False  # CPU, auto


def test_mixed_bfloat16_computes_in_bfloat16_and_outputs_float32(tiny_data, tmp_path):
    import keras

    from catdog.runs import load_run
    from catdog.training import train

    messages: list[str] = []
    result = train(load_config(None, FAST + ["train.precision=mixed_bfloat16"]), tiny_data, tmp_path / "run",
                   report=messages.append)
    assert any("precision mixed_bfloat16" in m for m in messages)
    assert np.isfinite(result.val_loss)
    assert keras.config.dtype_policy().name == "float32"  # training left the global policy alone

    model = load_run(result.run_dir).model
    conv, output = model.get_layer("conv"), model.get_layer("output")
    assert conv.dtype_policy.name == "mixed_bfloat16"
    assert conv.compute_dtype == "bfloat16" and conv.variable_dtype == "float32"
    assert output.dtype_policy.name == "float32"
    probs = model.predict(np.zeros((2, 16, 16, 3), "uint8"), verbose=0)
    assert probs.dtype == np.float32 and np.allclose(probs.sum(axis=1), 1, atol=1e-5)


def test_default_precision_on_cpu_is_float32(tiny_data, tmp_path):
    from catdog.runs import load_run
    from catdog.training import train

    result = train(load_config(None, FAST), tiny_data, tmp_path / "run")
    assert load_run(result.run_dir).model.get_layer("conv").compute_dtype == "float32"


def test_yaml_on_off_reach_jit_compile_as_words(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("train:\n  jit_compile: on\n")
    assert load_config(path).train.jit_compile == "on"
    assert load_config(None, ["train.jit_compile=off"]).train.jit_compile == "off"
