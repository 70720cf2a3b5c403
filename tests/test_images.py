"""Every awkward file a photo folder holds: generated here, then loaded or rejected with a reason."""

from __future__ import annotations

import io
import pickle
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile, features

import catdog.images
import catdog.jpeg
from catdog.errors import ImageError
from catdog.images import is_system_file, load_image
from catdog.jpeg import jpeg_structure_problem

RED, GREEN, BLUE, WHITE, BLACK = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0)


def save(path: Path, im: Image.Image, fmt: str, **options: object) -> Path:
    im.save(path, fmt, **options)
    return path


def jpeg_bytes(size: tuple[int, int] = (64, 64), **options: object) -> bytes:
    """A noisy JPEG, so that its entropy-coded data is long enough to damage in the middle."""
    rng = np.random.default_rng(0)
    pixels = (rng.random((size[1], size[0], 3)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90, **options)
    return buffer.getvalue()


def photo_like(size: tuple[int, int]) -> Image.Image:
    """Smooth gradients and a little noise: closer to a photo than pure noise, for comparisons."""
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(1)
    channels = [x * 255 / width, y * 255 / height, 128 + 100 * np.sin((x + y) / 9)]
    pixels = np.stack(channels, axis=-1) + rng.normal(0, 8, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def close_to(pixel: np.ndarray, colour: tuple[int, int, int], tolerance: int = 40) -> bool:
    return bool(np.all(np.abs(pixel.astype(int) - np.array(colour)) <= tolerance))


def assert_rgb(array: np.ndarray, size: tuple[int, int]) -> None:
    assert array.dtype == np.uint8
    assert array.shape == (*size, 3)


# --- accepted and converted ---------------------------------------------------------------------


def test_jpeg_loads_as_rgb_of_the_requested_height_and_width(tmp_path: Path) -> None:
    path = save(tmp_path / "cat.jpg", Image.new("RGB", (40, 30), RED), "JPEG")
    array = load_image(path, (24, 16))
    assert_rgb(array, (24, 16))
    assert close_to(array[12, 8], RED)


def test_png_named_jpg_is_recognised_by_content(tmp_path: Path) -> None:
    path = save(tmp_path / "really_a_png.jpg", Image.new("RGB", (20, 20), GREEN), "PNG")
    array = load_image(path, (16, 16))
    assert (array == GREEN).all()


def test_cmyk_jpeg_converts_to_rgb(tmp_path: Path) -> None:
    path = save(tmp_path / "print.jpg", Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG")
    assert close_to(load_image(path, (16, 16))[8, 8], RED)


def test_grayscale_jpeg_becomes_three_equal_channels(tmp_path: Path) -> None:
    path = save(tmp_path / "gray.jpg", Image.new("L", (40, 30), 100), "JPEG")
    array = load_image(path, (30, 40))
    assert (array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all()
    assert np.abs(array.astype(int) - 100).max() <= 2


def test_jpeg_decodes_to_the_same_pixels_as_pillow(tmp_path: Path) -> None:
    path = save(tmp_path / "photo.jpg", photo_like((256, 192)), "JPEG", quality=90)
    with Image.open(path) as im:
        pillow = im.convert("RGB")
    reference = np.asarray(pillow, dtype=int)
    assert np.abs(load_image(path, (192, 256)).astype(int) - reference).mean() < 0.5
    # Decoded at 1/4 scale, then resized: close to Pillow's full decode, resized.
    resized = np.asarray(pillow.resize((64, 48), Image.Resampling.BILINEAR), dtype=int)
    assert np.abs(load_image(path, (48, 64)).astype(int) - resized).mean() < 3


@pytest.mark.parametrize("options", [{"subsampling": 2}, {"subsampling": 1}, {"subsampling": 0},
                                     {"progressive": True}, {"gray": True}], ids=str)
def test_jpeg_decodes_at_pillows_draft_scale_to_pillows_very_pixels(tmp_path: Path, options: dict) -> None:
    # At 1/1, 1/2, 1/4 and 1/8, and at sizes between them where libjpeg-turbo alone could take 5/8
    # or 3/8 (96x72, 150x110), catdog decodes at the scale Pillow's draft picks, to Pillow's very
    # pixels, then resizes as OpenCV does: what the recipe in docs/serving.md relies on.
    im = photo_like((256, 192))
    im = im.convert("L") if options.pop("gray", False) else im
    path = save(tmp_path / "photo.jpg", im, "JPEG", quality=90, **options)
    for need in ((256, 192), (128, 96), (64, 48), (32, 24), (100, 72), (96, 72), (150, 110), (20, 30)):
        with Image.open(path) as pillow:
            pillow.draft("RGB", need)
            drafted = np.asarray(pillow.convert("RGB"))
        scale = catdog.jpeg.draft_scale((256, 192), need)
        assert drafted.shape[:2] == (192 // scale, 256 // scale), need
        turbo = catdog.jpeg.decode_jpeg_strictly(path.read_bytes(), (256, 192), scale)
        assert turbo is not None and (turbo == drafted).all(), need
        expected = drafted
        if drafted.shape[:2] != (need[1], need[0]):
            shrink = drafted.shape[1] >= 2 * need[0] or drafted.shape[0] >= 2 * need[1]
            expected = cv2.resize(drafted, need, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        assert (load_image(path, (need[1], need[0])) == expected).all(), need


@pytest.mark.parametrize(("size", "need", "scale"), [
    ((256, 192), (256, 192), 1), ((256, 192), (128, 96), 2), ((256, 192), (129, 96), 1),
    ((256, 192), (100, 72), 2), ((256, 192), (50, 40), 4), ((256, 192), (1, 1), 8),
    ((500, 375), (160, 160), 2), ((500, 375), (224, 224), 1), ((500, 375), (600, 600), 1),
])
def test_draft_scale_is_pillows_rule(size: tuple[int, int], need: tuple[int, int], scale: int) -> None:
    assert catdog.jpeg.draft_scale(size, need) == scale
    with Image.open(io.BytesIO(jpeg_bytes(size))) as jpeg:
        jpeg.draft("RGB", need)
        assert jpeg.size == (-(-size[0] // scale), -(-size[1] // scale))


def test_jpeg_too_small_to_scale_exactly_goes_to_pillow(tmp_path: Path) -> None:
    # Under 8 pixels a side, libjpeg-turbo would reach a 3/8 scale where Pillow decodes at 1/2.
    path = save(tmp_path / "tiny.jpg", photo_like((5, 5)), "JPEG", quality=90)
    assert catdog.jpeg.decode_jpeg_strictly(path.read_bytes(), (5, 5), 4) is None
    with Image.open(path) as pillow:
        pillow.draft("RGB", (1, 1))
        drafted = np.asarray(pillow.convert("RGB"))
    assert drafted.shape == (2, 2, 3)
    assert (load_image(path, (1, 1)) == cv2.resize(drafted, (1, 1), interpolation=cv2.INTER_AREA)).all()


def test_grayscale_becomes_three_equal_channels(tmp_path: Path) -> None:
    path = save(tmp_path / "gray.png", Image.new("L", (20, 20), 100), "PNG")
    array = load_image(path, (16, 16))
    assert (array == 100).all()


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257 * 128], [65535, 257 * 10]], dtype=np.uint16)
    im = Image.fromarray(values)
    assert im.mode == "I;16"
    path = save(tmp_path / "depth.png", im, "PNG")
    array = load_image(path, (2, 2))
    assert array[..., 0].tolist() == [[0, 128], [255, 10]]


def test_float_image_in_0_1_is_scaled_to_0_255(tmp_path: Path) -> None:
    im = Image.fromarray(np.full((8, 8), 0.5, dtype=np.float32), "F")
    path = save(tmp_path / "float.tif", im, "TIFF")
    assert (load_image(path, (8, 8)) == 128).all()


def test_palette_transparency_is_composited_on_white(tmp_path: Path) -> None:
    im = Image.new("P", (20, 20), 0)
    im.putpalette([*RED, *BLUE] + [0] * 762)
    im.paste(1, (10, 0, 20, 20))  # right half is palette index 1 ...
    path = save(tmp_path / "sticker.png", im, "PNG", transparency=1)  # ... which is transparent
    array = load_image(path, (20, 20))
    assert (array[:, :8] == RED).all()
    assert (array[:, 12:] == WHITE).all()


def test_rgba_alpha_is_composited_on_white(tmp_path: Path) -> None:
    im = Image.new("RGBA", (20, 20), (*RED, 255))
    im.paste((*BLUE, 0), (10, 0, 20, 20))
    path = save(tmp_path / "logo.png", im, "PNG")
    array = load_image(path, (20, 20))
    assert (array[:, :8] == RED).all()
    assert (array[:, 12:] == WHITE).all()


def test_half_transparent_grayscale_blends_with_white(tmp_path: Path) -> None:
    path = save(tmp_path / "la.png", Image.new("LA", (8, 8), (0, 128)), "PNG")
    assert np.abs(load_image(path, (8, 8)).astype(int) - 127).max() <= 1


@pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")
def test_webp(tmp_path: Path) -> None:
    path = save(tmp_path / "web.webp", Image.new("RGB", (20, 20), BLUE), "WEBP", lossless=True)
    assert (load_image(path, (16, 16)) == BLUE).all()


def test_bmp(tmp_path: Path) -> None:
    path = save(tmp_path / "old.bmp", Image.new("RGB", (20, 20), GREEN), "BMP")
    assert (load_image(path, (16, 16)) == GREEN).all()


def test_animated_gif_gives_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (20, 20), RED), Image.new("RGB", (20, 20), BLUE)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert close_to(load_image(path, (16, 16))[8, 8], RED, tolerance=5)


def test_one_pixel_image_is_upscaled(tmp_path: Path) -> None:
    path = save(tmp_path / "dot.png", Image.new("RGB", (1, 1), RED), "PNG")
    for mode in ("squash", "crop", "pad"):
        array = load_image(path, (16, 16), mode)
        assert_rgb(array, (16, 16))
        assert (array[8, 8] == RED).all()


def test_exif_orientation_makes_a_phone_photo_upright(tmp_path: Path) -> None:
    # Stored 40 wide x 20 tall with a red top-left corner; tag 6 means "rotate 90 degrees clockwise
    # to display", so the upright photo is 20 wide x 40 tall with the red corner at the top right.
    im = Image.new("RGB", (40, 20), BLUE)
    im.paste(RED, (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(tmp_path / "phone.jpg", im, "JPEG", quality=95, exif=exif)
    array = load_image(path, (40, 20))
    assert close_to(array[3, 16], RED)
    assert close_to(array[3, 3], BLUE)
    assert close_to(array[36, 16], BLUE)


def test_large_jpeg_decoded_at_reduced_scale_keeps_its_content(tmp_path: Path) -> None:
    im = Image.new("RGB", (512, 256), RED)
    im.paste(BLUE, (256, 0, 512, 256))
    path = save(tmp_path / "big.jpg", im, "JPEG", quality=95)
    array = load_image(path, (16, 32))
    assert close_to(array[8, 4], RED)
    assert close_to(array[8, 28], BLUE)


def test_sideways_phone_photo_decoded_at_reduced_scale_is_upright(tmp_path: Path) -> None:
    # Stored 512 wide x 256 tall, red left half; tag 6 turns it clockwise: upright, red is on top.
    im = Image.new("RGB", (512, 256), BLUE)
    im.paste(RED, (0, 0, 256, 256))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(tmp_path / "phone.jpg", im, "JPEG", quality=95, exif=exif)
    array = load_image(path, (32, 16))
    assert close_to(array[4, 8], RED)
    assert close_to(array[28, 8], BLUE)


def test_mpo_gives_its_first_picture(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (32, 32), RED), Image.new("RGB", (32, 32), BLUE)]
    path = tmp_path / "stereo.jpg"
    frames[0].save(path, "MPO", save_all=True, append_images=frames[1:])
    assert close_to(load_image(path, (16, 16))[8, 8], RED)


def test_jpeg_with_restart_markers_and_camera_trailer_is_accepted(tmp_path: Path) -> None:
    data = jpeg_bytes(restart_marker_rows=1) + b"trailer that phones append after the image"
    path = tmp_path / "camera.jpg"
    path.write_bytes(data)
    assert_rgb(load_image(path, (16, 16)), (16, 16))


def after_app0(data: bytes) -> int:
    """Where the segment after a JFIF JPEG's APP0 begins."""
    return 4 + int.from_bytes(data[4:6], "big")


def test_jpeg_with_harmless_header_problems_is_accepted(tmp_path: Path) -> None:
    # libjpeg warns about these, which stops a strict decode; the pixels are intact.
    good = jpeg_bytes()
    junk = good[: after_app0(good)] + b"junk between segments" + good[after_app0(good) :]
    revision = bytearray(good)
    revision[good.index(b"JFIF\x00") + 5] = 2  # JFIF 2.01 does not exist
    for name, data in (("junk.jpg", junk), ("jfif2.jpg", bytes(revision))):
        path = tmp_path / name
        path.write_bytes(data)
        assert_rgb(load_image(path, (16, 16)), (16, 16))


def test_jpeg_that_turbojpeg_cannot_take_is_decoded_by_pillow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise ValueError(
            "tjDecompressHeader3(): Could not determine subsampling level of JPEG image"
        )

    monkeypatch.setattr(catdog.jpeg.simplejpeg, "decode_jpeg", refuse)
    path = save(tmp_path / "odd.jpg", Image.new("RGB", (40, 30), RED), "JPEG")
    assert close_to(load_image(path, (16, 16))[8, 8], RED)
    data = bytearray(jpeg_bytes())
    middle = (data.index(b"\xff\xda") + len(data)) // 2
    data[middle : middle + 2] = b"\xff\x45"
    path.write_bytes(bytes(data))
    # Pillow's words: the file went to Pillow.
    assert reason(path) == "corrupt JPEG: broken data stream when reading image file"


def test_load_image_pickles_for_worker_processes() -> None:
    assert pickle.loads(pickle.dumps(load_image)) is load_image


# --- rejected with a reason ---------------------------------------------------------------------


def reason(path: Path, size: tuple[int, int] = (16, 16)) -> str:
    with pytest.raises(ImageError) as caught:
        load_image(path, size)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert reason(path) == "empty file (0 bytes)"


def test_truncated_jpeg(tmp_path: Path) -> None:
    data = jpeg_bytes()
    path = tmp_path / "half.jpg"
    path.write_bytes(data[: len(data) // 2])
    assert reason(path) == "truncated JPEG: image file is truncated"


def test_truncated_jpeg_is_rejected_even_if_another_library_allows_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    data = jpeg_bytes()
    path = tmp_path / "half.jpg"
    path.write_bytes(data[: len(data) // 2])
    assert reason(path).startswith("truncated JPEG")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is left as it was


def test_jpeg_without_end_marker(tmp_path: Path) -> None:
    path = tmp_path / "no_eoi.jpg"
    path.write_bytes(jpeg_bytes()[:-2])
    assert reason(path) == "truncated JPEG: image file is truncated"


def test_cmyk_jpeg_without_end_marker(tmp_path: Path) -> None:
    # CMYK stays with Pillow, which decodes this silently; the structure check catches it.
    buffer = io.BytesIO()
    Image.new("CMYK", (64, 64), (0, 255, 255, 0)).save(buffer, "JPEG")
    path = tmp_path / "print.jpg"
    path.write_bytes(buffer.getvalue()[:-2])
    assert reason(path) == "truncated JPEG: no end-of-image marker"


def test_corrupt_jpeg_with_a_bad_marker_in_its_data(tmp_path: Path) -> None:
    data = bytearray(jpeg_bytes())
    middle = (data.index(b"\xff\xda") + len(data)) // 2
    data[middle : middle + 2] = b"\xff\x45"
    path = tmp_path / "corrupt.jpg"
    path.write_bytes(bytes(data))
    assert reason(path) == "corrupt JPEG: unsupported marker type 0x45"


# Pillow writes restart markers from 10.2 (older releases ignore restart_marker_rows).
@pytest.mark.skipif(tuple(map(int, Image.__version__.split(".")[:2])) < (10, 2),
                    reason="Pillow writes JPEG restart markers from 10.2")
def test_corrupt_jpeg_with_lost_data_between_restart_markers(tmp_path: Path) -> None:
    data = jpeg_bytes(restart_marker_rows=1)
    second, third = data.index(b"\xff\xd1"), data.index(b"\xff\xd2")
    path = tmp_path / "spliced.jpg"
    path.write_bytes(data[:second] + data[third:])  # a chunk lost in transfer
    assert reason(path) == "corrupt JPEG: restart marker 2 where 1 belongs"


def test_jpeg_structure_check_on_bytes() -> None:
    good = jpeg_bytes()
    assert jpeg_structure_problem(good) is None
    assert jpeg_structure_problem(good[:-2]) == "truncated JPEG: no end-of-image marker"
    assert jpeg_structure_problem(b"GIF89a") == "corrupt JPEG: no start-of-image marker"
    # Junk between header segments leaves the pixels intact; libjpeg skips it, and so do we.
    assert jpeg_structure_problem(good[:2] + b"junk" + good[2:]) is None
    assert jpeg_structure_problem(good[:2] + b"junk") == "truncated JPEG: no end-of-image marker"


def damage(data: bytes, how: str) -> bytes:
    """`data` with its image data damaged in the middle, every marker left intact."""
    middle = (data.index(b"\xff\xda") + len(data)) // 2
    damaged = bytearray(data)
    if how == "zeroed":
        damaged[middle : middle + 200] = bytes(200)
    elif how == "overwritten":
        damaged[middle : middle + 200] = bytes(range(200)).replace(b"\xff", b"\xfe")
    elif how == "bit-flipped":  # one bit in each of 16 bytes, as a failing disk or cable does
        for i in range(middle, middle + 16):
            damaged[i] ^= 0x10
    elif how == "early end marker":
        damaged[middle:middle] = b"\xff\xd9"  # the rest of the picture follows, unread
    return bytes(damaged)


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("zeroed", "corrupt JPEG: extraneous bytes before marker 0xd9"),
        ("overwritten", None),
        ("bit-flipped", None),
        ("early end marker", "corrupt JPEG: premature end of data segment"),
    ],
)
def test_damaged_image_data_with_intact_markers(
    tmp_path: Path, how: str, expected: str | None
) -> None:
    # Pillow decodes all of these silently into a partly garbled picture; libjpeg's verdict is kept.
    path = tmp_path / "garbled.jpg"
    path.write_bytes(damage(jpeg_bytes(), how))
    if expected:
        assert reason(path) == expected
    else:  # where arbitrary damage lands decides libjpeg's words; only the kind of reason is certain
        assert reason(path).startswith("corrupt JPEG: ")


def test_harmless_header_problem_does_not_hide_damaged_image_data(tmp_path: Path) -> None:
    damaged = damage(jpeg_bytes(), "zeroed")
    path = tmp_path / "junk_and_garbled.jpg"
    path.write_bytes(damaged[: after_app0(damaged)] + b"junk" + damaged[after_app0(damaged) :])
    assert reason(path) == "corrupt JPEG: extraneous bytes before marker 0xd9"


def test_text_file_named_jpg(tmp_path: Path) -> None:
    path = tmp_path / "error_page.jpg"
    path.write_text("<html><body>404 Not Found</body></html>\n")
    assert reason(path) == "not an image (unrecognised format)"


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height`, followed by a few bytes of pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(bytes(64)))
        + chunk(b"IEND", b"")
    )


def test_decompression_bomb_claiming_billions_of_pixels(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(png_claiming(50_000, 40_000))
    assert reason(path) == "decompression bomb: header claims 2,000,000,000 pixels"


def test_image_over_the_limit_but_under_pillows_is_rejected_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    path.write_bytes(png_claiming(12_000, 10_000))
    assert reason(path) == "decompression bomb: header claims 120,000,000 pixels"


def test_missing_file_and_folder(tmp_path: Path) -> None:
    assert reason(tmp_path / "gone.jpg") == "file not found (moved or deleted?)"
    assert reason(tmp_path) == "is a folder, not a file"


def test_ds_store_is_a_system_file_and_not_an_image(tmp_path: Path) -> None:
    path = tmp_path / ".DS_Store"
    path.write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(100))
    assert is_system_file(path)
    assert reason(path) == "not an image (unrecognised format)"


@pytest.mark.parametrize(
    ("name", "system"),
    [
        ("Thumbs.db", True),
        ("desktop.ini", True),
        ("DESKTOP.INI", True),
        (".hidden.jpg", True),
        ("._cat.jpg", True),
        ("cat.jpg", False),
        ("thumbs.jpg", False),
    ],
)
def test_is_system_file(name: str, system: bool) -> None:
    assert is_system_file(Path("photos") / name) is system


def test_bad_resize_mode_is_a_callers_bug(tmp_path: Path) -> None:
    path = save(tmp_path / "cat.png", Image.new("RGB", (8, 8)), "PNG")
    with pytest.raises(ValueError, match="resize must be one of squash, crop, pad; got 'zoom'"):
        load_image(path, (8, 8), "zoom")


# --- resize modes -------------------------------------------------------------------------------


@pytest.fixture
def striped(tmp_path: Path) -> Path:
    """40 wide x 20 tall: red left quarter, green middle half, blue right quarter."""
    im = Image.new("RGB", (40, 20), GREEN)
    im.paste(RED, (0, 0, 10, 20))
    im.paste(BLUE, (30, 0, 40, 20))
    return save(tmp_path / "striped.png", im, "PNG")


def test_squash_keeps_everything_stretched(striped: Path) -> None:
    array = load_image(striped, (20, 20), "squash")
    assert_rgb(array, (20, 20))
    assert (array[:, 0] == RED).all()
    assert (array[:, -1] == BLUE).all()


def test_crop_keeps_the_center(striped: Path) -> None:
    array = load_image(striped, (20, 20), "crop")
    assert_rgb(array, (20, 20))
    assert (array == GREEN).all()


def test_crop_of_a_tall_target_cuts_the_sides(striped: Path) -> None:
    array = load_image(striped, (40, 10), "crop")
    assert_rgb(array, (40, 10))
    assert (array == GREEN).all()


def test_pad_letterboxes_on_black(striped: Path) -> None:
    array = load_image(striped, (20, 20), "pad")
    assert_rgb(array, (20, 20))
    assert (array[:5] == BLACK).all()  # 40x20 fits 20x20 as 20x10: bars of 5 rows above and below
    assert (array[-5:] == BLACK).all()
    assert (array[10, 0] == RED).all()
    assert (array[10, -1] == BLUE).all()
    assert (array[6:14, 8:12] == GREEN).all()


def test_pad_of_a_matching_aspect_has_no_bars(striped: Path) -> None:
    array = load_image(striped, (10, 20), "pad")
    assert not (array == BLACK).all(axis=-1).any()


def test_result_is_a_writable_array(striped: Path) -> None:
    array = load_image(striped, (8, 8))
    array[0, 0] = 0  # callers may normalise or augment in place
