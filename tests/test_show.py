"""`catdog show`: every picture of what the network sees in one photo, never over the user's files."""

from __future__ import annotations

import json

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
    # Again: a folder of its own beside the first, whose pictures stay as they were.
    before = {name: (folder / name).read_bytes() for name in names}
    (folder / "heatmap.png").write_bytes(b"looked at")
    again = invoke("show", "--run", run, photo)
    assert again.exit_code == 0, again.output
    assert f"wrote {run / 'show' / 'img_000-2' / 'heatmap.png'}" in again.output
    assert png_size(run / "show" / "img_000-2" / "heatmap.png")[0] > 0
    assert (folder / "heatmap.png").read_bytes() == b"looked at"
    assert all((folder / name).read_bytes() == before[name] for name in names if name != "heatmap.png")


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
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: {bad}: ") and result.output.count("\n") == 1
    assert not (run / "show" / "bad").exists()  # no folder for pictures never drawn


def test_show_says_what_is_wrong_with_a_dash_or_a_url(trained):
    run, _ = trained
    result = invoke("show", "--run", run, "-")
    assert result.exit_code == 1
    assert result.output == ("Error: -: photos are not read from standard input ('-'); save the photo to a file "
                             "and pass its path\n")
    result = invoke("show", "--run", run, "https://example.com/cat.jpg")
    assert result.exit_code == 1
    assert result.output == ("Error: https://example.com/cat.jpg: a URL, not a file: catdog reads photos from "
                             "disk; download it first (e.g. curl -O URL)\n")


def test_show_prints_what_predict_answers_for_the_same_photo_and_run(trained, tmp_path):
    run, photos = trained
    files = sorted(photos.rglob("*.jpg"))[::6]  # a few of each class
    predicted = {}
    for line in invoke("predict", "--run", run, "--json", *files).output.splitlines():
        if line.startswith("{"):
            row = json.loads(line)
            predicted[row["path"]] = row
    for n, photo in enumerate(files):
        result = invoke("show", "--run", run, "--out", tmp_path / str(n), photo)
        assert result.exit_code == 0, result.output
        label, probability = result.output.splitlines()[0].removeprefix(f"{photo}: ").rsplit(" (", 1)
        expected = predicted[str(photo)]
        assert label == expected["label"], (photo, result.output, expected)
        assert abs(float(probability.rstrip(")")) - expected["probability"]) <= 0.0005 + 1e-6, (photo, expected)
