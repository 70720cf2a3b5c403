"""`catdog show`: every picture of what the network sees in one photo, never over the user's files."""

from __future__ import annotations

from click.testing import CliRunner
from conftest import png_size

from catdog.cli import main


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_show_writes_every_picture_and_the_prediction(trained):
    run, photos = trained
    photo = photos / "dogs" / "img_000.jpg"
    result = invoke("show", "--run", run, photo)
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{photo}: ")
    folder = run / "show" / "img_000"
    names = ["input.png", "filters.png", "activations-conv.png", "activations-pool.png", "heatmap.png"]
    for name in names:
        assert f"wrote {folder / name}" in result.output
        assert png_size(folder / name)[0] > 0
    assert png_size(folder / "input.png") == (500, 540)
    # Again into our own run folder: overwriting is fine.
    assert invoke("show", "--run", run, photo).exit_code == 0


def test_show_never_overwrites_the_user_s_files(trained, tmp_path):
    run, photos = trained
    (tmp_path / "heatmap.png").write_text("mine")
    result = invoke("show", "--run", run, "--out", tmp_path, photos / "cats" / "img_001.jpg")
    assert result.exit_code == 1
    assert f"--out {tmp_path} already holds heatmap.png; pick another folder" in result.output
    assert (tmp_path / "heatmap.png").read_text() == "mine"


def test_show_reports_an_unreadable_photo(trained, tmp_path):
    run, _ = trained
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    result = invoke("show", "--run", run, bad)
    assert result.exit_code == 1 and "Error:" in result.output
