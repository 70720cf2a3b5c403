"""Finding the labelled photos in a folder: class folders, nested folders, flat names, and refusals."""

from __future__ import annotations

import pytest
from conftest import write_images

from catdog.errors import DataError
from catdog.folders import discover


def test_class_folders(tiny_data):
    (tiny_data / "cats" / ".DS_Store").write_bytes(b"junk")
    found = discover(tiny_data)
    assert found.classes == ["cats", "dogs"] and found.layout == "class folders"
    assert len(found.files) == 48 and found.labels.count(0) == 24
    assert ("cats/.DS_Store", "hidden or system file") in found.ignored


def test_nested_class_folders_like_petimages(tmp_path):
    write_images(tmp_path / "PetImages" / "Cat" / "batch1", 3)
    write_images(tmp_path / "PetImages" / "Dog", 2)
    found = discover(tmp_path / "PetImages")
    assert found.classes == ["Cat", "Dog"] and len(found.files) == 5


def test_kaggle_flat_names(tmp_path):
    for i in range(3):
        for kind in ("cat", "dog"):
            write_images(tmp_path / "x", 1)[0].rename(tmp_path / f"{kind}.{i}.jpg")
    (tmp_path / "x").rmdir()
    (tmp_path / "notes.txt").write_text("hi")
    found = discover(tmp_path)
    assert found.layout == "flat names" and found.classes == ["cat", "dog"] and len(found.files) == 6
    assert found.ignored == [("notes.txt", "no class in the name (expected e.g. cat.12.jpg)")]


def test_errors(tmp_path):
    with pytest.raises(DataError, match="data folder not found: .*missing"):
        discover(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found in"):
        discover(tmp_path / "empty")
    write_images(tmp_path / "one" / "cats", 2)
    with pytest.raises(DataError, match=r"only one class found in .*one \(cats\)"):
        discover(tmp_path / "one")
    (tmp_path / "one" / "dogs").mkdir()
    with pytest.raises(DataError, match=r"class folder .*dogs holds no files"):
        discover(tmp_path / "one")


def test_macos_zip_folder_at_the_top_is_skipped(tiny_data):
    # Archive Utility's zips carry __MACOSX/ beside the class folders, holding `._*` resource forks.
    write_images(tiny_data / "__MACOSX" / "cats", 2)
    (tiny_data / "__MACOSX" / "cats" / "._img_000.jpg").write_bytes(b"\0\5\26\7")
    (tiny_data / "dogs" / "._img_000.jpg").write_bytes(b"\0\5\26\7")
    found = discover(tiny_data)
    assert found.classes == ["cats", "dogs"] and len(found.files) == 48
    assert ("dogs/._img_000.jpg", "hidden or system file") in found.ignored


@pytest.mark.parametrize("names", [["IMG_0001.jpg", "IMG_0002.jpg", "cat.1.jpg", "dog.1.jpg"],
                                   ["IMG_0001.jpg", "DSC_1234.JPG"], ["PXL_20230101.jpg", "dog.2.jpg"]])
def test_camera_file_names_do_not_make_a_class(tmp_path, names):
    for name in names:
        write_images(tmp_path / "x", 1)[0].rename(tmp_path / name)
    (tmp_path / "x").rmdir()
    camera = sorted(n for n in names if not n.startswith(("cat.", "dog.")))
    first = {n.split("_")[0].lower(): n for n in reversed(camera)}
    with pytest.raises(DataError) as caught:
        discover(tmp_path)
    assert str(caught.value) == (
        f"{tmp_path}: files named like {', '.join(first[c] for c in sorted(first))} are a camera's photos, not "
        f"<class>.<number>, and would make a class {sorted(first)[0]!r}; put each class's photos in a sub-folder "
        f"of its own (e.g. cats/, dogs/) or name them cat.1.jpg, dog.1.jpg")
def touch(root, *names):
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def test_a_fifo_in_a_class_folder_is_listed_not_opened(tiny_data):
    import os
    os.mkfifo(tiny_data / "cats" / "pipe")
    (tiny_data / "dogs" / "inner").mkdir()
    found = discover(tiny_data)
    assert found.ignored == [("cats/pipe", "not a regular file")] and len(found.files) == 48


def test_flat_names_skip_folders_hidden_files_and_other_names_but_keep_going(tmp_path):
    touch(tmp_path, ".thumbs/x.jpg", ".DS_Store", "Cat.2.jpg", "bird.jpg", "cat.1.jpg", "dog.1.jpg",
          "zzz.txt", "dog_7.png")
    found = discover(tmp_path)
    assert found.layout == "flat names" and found.classes == ["cat", "dog"]
    assert found.files == ["Cat.2.jpg", "cat.1.jpg", "dog.1.jpg", "dog_7.png"] and found.labels == [0, 0, 1, 1]
    assert found.ignored == [(".DS_Store", "hidden or system file"),
                             ("bird.jpg", "no class in the name (expected e.g. cat.12.jpg)"),
                             ("zzz.txt", "no class in the name (expected e.g. cat.12.jpg)")]


def test_classes_the_model_does_not_know_are_named_with_the_models(tiny_data):
    touch(tiny_data, "birds/1.jpg", "fish/1.jpg")
    with pytest.raises(DataError) as exc:
        discover(tiny_data, ["cats", "dogs"])
    assert str(exc.value) == f"{tiny_data} has classes the model does not know: birds, fish (model classes: cats, dogs)"
    found = discover(tiny_data, ["birds", "cats", "dogs", "fish", "owls"])
    assert found.classes == ["birds", "cats", "dogs", "fish", "owls"]
    assert found.labels == [0] + [1] * 24 + [2] * 24 + [3]


def test_a_folder_of_splits_is_refused_naming_the_split_and_its_classes(tmp_path):
    touch(tmp_path, "Train/cats/1.jpg", "Train/dogs/1.jpg", "Validation/cats/1.jpg")
    with pytest.raises(DataError) as exc:
        discover(tmp_path)
    message = str(exc.value)
    assert message.startswith(f"{tmp_path} holds split folders (Train, Validation)")
    assert "Train/ holds the class folders cats, dogs" in message and f"--data {tmp_path / 'Train'} " in message


def test_split_names_need_two_class_folders_inside_to_be_refused(tmp_path):
    # train/ with one folder inside, or a class folder that holds folders, are still classes.
    touch(tmp_path, "a/train/cats/1.jpg", "a/other/1.jpg", "b/cats/x/1.jpg", "b/cats/y/1.jpg", "b/dogs/1.jpg")
    assert discover(tmp_path / "a").classes == ["other", "train"]
    assert discover(tmp_path / "b").classes == ["cats", "dogs"]


@pytest.mark.parametrize("files, hint", [
    (["only/x/1.jpg", "only/y/1.jpg"], "; did you mean --data ROOT/only?"),
    (["only/train/cats/1.jpg", "only/train/dogs/1.jpg"],
     "; only/ holds split folders: pass e.g. --data ROOT/only/train"),
    (["only/x/1.jpg"], ""),
    (["only/x/1.jpg", "only/y/1.jpg", "only/z/1.jpg"], "; did you mean --data ROOT/only?"),
    (["cat.1.jpg"], ""),  # flat names: no class folder to look into
])
def test_only_one_class_says_where_the_classes_may_be(tmp_path, files, hint):
    touch(tmp_path, *files)
    with pytest.raises(DataError) as exc:
        discover(tmp_path)
    cls = "cat" if files == ["cat.1.jpg"] else "only"
    assert str(exc.value) == (f"only one class found in {tmp_path} ({cls}); a classifier needs at least two "
                              f"class folders" + hint.replace("ROOT", str(tmp_path)))
