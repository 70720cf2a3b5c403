"""Download, verify and extract archives served from 127.0.0.1: no internet needed."""

from __future__ import annotations

import hashlib
import io
import socket
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from catdog.download import DATASETS, download, existing
from catdog.errors import DownloadError


def tiny_jpeg(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), colour).save(buffer, "JPEG")
    return buffer.getvalue()


def make_zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


PHOTOS = {
    "pets/cats/c1.jpg": tiny_jpeg((200, 80, 80)),
    "pets/cats/c2.jpg": tiny_jpeg((210, 90, 70)),
    "pets/dogs/d1.jpg": tiny_jpeg((80, 80, 200)),
}
PETS_ZIP = make_zip(PHOTOS)
PETS_SHA = hashlib.sha256(PETS_ZIP).hexdigest()


@dataclass
class Served:
    """What the test server sends, and what it was asked for."""

    files: dict[str, bytes] = field(default_factory=dict)
    ranges: bool = True  # honour Range requests
    cut_after: int | None = None  # send only this many bytes of the next response, then hang up
    short_length: int | None = None  # claim (and send) only this many bytes in Content-Length
    seen_ranges: list[str] = field(default_factory=list)
    base: str = ""

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"


@pytest.fixture
def server() -> Iterator[Served]:
    served = Served()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            body = served.files.get(self.path.lstrip("/"))
            if body is None:
                self.send_error(404, "Not Found")
                return
            start, status = 0, 200
            requested = self.headers.get("Range")
            if requested:
                served.seen_ranges.append(requested)
            if requested and served.ranges:
                start = int(requested.removeprefix("bytes=").split("-")[0])
                if start >= len(body):
                    self.send_error(416, "Range Not Satisfiable")
                    return
                status = 206
            self.send_response(status)
            self.send_header("Content-Length", str(len(body) - start if served.short_length is None
                                                   else min(served.short_length, len(body) - start)))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.end_headers()
            payload = body[start:]
            if served.short_length is not None:
                payload = payload[: served.short_length]
            if served.cut_after is not None:
                payload, served.cut_after = payload[: served.cut_after], None
                self.close_connection = True
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    served.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield served
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_download_verifies_extracts_and_returns_the_class_folder_root(server: Served, tmp_path: Path) -> None:
    server.files["pets.zip"] = PETS_ZIP
    calls: list[tuple[int, int | None]] = []
    root = download(None, tmp_path / "data", url=server.url("pets.zip"), sha256=PETS_SHA.upper(),
                    progress=lambda done, total: calls.append((done, total)))
    assert root == tmp_path / "data" / "pets"
    assert sorted(p.name for p in root.iterdir()) == ["cats", "dogs"]
    assert (root / "cats" / "c1.jpg").read_bytes() == PHOTOS["pets/cats/c1.jpg"]
    assert calls[-1] == (len(PETS_ZIP), len(PETS_ZIP))
    assert (tmp_path / "data" / "pets.zip").read_bytes() == PETS_ZIP  # kept for re-extraction
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["pets", "pets.zip"]  # no leftovers


def test_registry_dataset_from_a_mirror_returns_its_train_folder_and_reuses_it(
    server: Served, tmp_path: Path
) -> None:
    server.files["mirror.zip"] = make_zip({
        "cats_and_dogs_filtered/train/cats/c.jpg": tiny_jpeg((200, 0, 0)),
        "cats_and_dogs_filtered/train/dogs/d.jpg": tiny_jpeg((0, 0, 200)),
        "cats_and_dogs_filtered/validation/cats/c.jpg": tiny_jpeg((200, 0, 0)),
        "cats_and_dogs_filtered/vectorize.py": b"print('hi')\n",
    })
    root = download("cats_and_dogs_filtered", tmp_path, url=server.url("mirror.zip"))
    assert root == tmp_path / "cats_and_dogs_filtered" / "train"
    assert existing("cats_and_dogs_filtered", tmp_path) == root
    del server.files["mirror.zip"]  # a second run must not need the network
    assert download("cats_and_dogs_filtered", tmp_path) == root


def test_registry_lists_both_official_datasets() -> None:
    assert DATASETS["petimages"].url.endswith("/kagglecatsanddogs_5340.zip")
    assert DATASETS["petimages"].folder == "PetImages"
    assert DATASETS["cats_and_dogs_filtered"].url.startswith("https://storage.googleapis.com/")
    for dataset in DATASETS.values():
        assert dataset.sha256 is None or len(dataset.sha256) == 64


def test_wrong_checksum_is_an_error_and_leaves_nothing_a_rerun_trusts(server: Served, tmp_path: Path) -> None:
    server.files["pets.zip"] = PETS_ZIP
    with pytest.raises(DownloadError) as caught:
        download(None, tmp_path, url=server.url("pets.zip"), sha256="0" * 64)
    assert str(caught.value) == (
        f"the download from {server.url('pets.zip')} was deleted: its SHA-256 is {PETS_SHA}, expected {'0' * 64}: "
        "the file is damaged or the checksum is wrong; rerun to download again"
    )
    assert not (tmp_path / "pets").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    # A rerun with the right checksum downloads it again.
    assert download(None, tmp_path, url=server.url("pets.zip"), sha256=PETS_SHA) == tmp_path / "pets"


def test_malformed_checksum_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="--sha256 must be 64 hexadecimal digits; got 'abc'"):
        download(None, tmp_path, url="file:///nowhere.zip", sha256="abc")


def test_member_escaping_the_target_is_refused_and_nothing_is_written(server: Served, tmp_path: Path) -> None:
    server.files["evil.zip"] = make_zip({"pets/cats/c1.jpg": PHOTOS["pets/cats/c1.jpg"], "../evil.txt": b"x"})
    target = tmp_path / "data"
    with pytest.raises(DownloadError) as caught:
        download(None, target, url=server.url("evil.zip"))
    assert str(caught.value) == f"unsafe archive evil.zip: member '../evil.txt' would land outside {target}"
    assert not (tmp_path / "evil.txt").exists()
    assert sorted(p.name for p in target.iterdir()) == ["evil.zip"]  # no pets/, no staging folder


def tar_bytes(add: callable) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        add(tf)
    return buffer.getvalue()


def add_file(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def add_link(tf: tarfile.TarFile, name: str, target: str) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    tf.addfile(info)


def test_tar_gz_is_extracted(tmp_path: Path) -> None:
    archive = tmp_path / "pets.tar.gz"
    archive.write_bytes(tar_bytes(lambda tf: [add_file(tf, n, d) for n, d in PHOTOS.items()]))
    root = download(None, tmp_path / "out", url=archive.as_uri())
    assert root == tmp_path / "out" / "pets"
    assert (root / "dogs" / "d1.jpg").read_bytes() == PHOTOS["pets/dogs/d1.jpg"]


@pytest.mark.parametrize(
    ("add", "message"),
    [
        (lambda tf: add_file(tf, "/etc/evil", b"x"), "member '/etc/evil' has an absolute path"),
        (lambda tf: add_link(tf, "pets/link", "../../outside"), "link 'pets/link' points outside ('../../outside')"),
        (lambda tf: add_link(tf, "pets/abs", "/etc/passwd"), "link 'pets/abs' points outside ('/etc/passwd')"),
    ],
)
def test_unsafe_tar_members_are_refused(tmp_path: Path, add: callable, message: str) -> None:
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(tar_bytes(lambda tf: (add_file(tf, "pets/cats/c.jpg", b"x"), add(tf))))
    with pytest.raises(DownloadError) as caught:
        download(None, tmp_path / "out", url=archive.as_uri())
    assert str(caught.value) == f"unsafe archive evil.tar.gz: {message}"
    assert not (tmp_path / "out").exists()  # the folder it made for the extraction is gone again


def test_interrupted_download_resumes_with_a_range_request(server: Served, tmp_path: Path) -> None:
    server.files["pets.zip"] = PETS_ZIP
    server.cut_after = 1000
    with pytest.raises(DownloadError, match="rerun to resume"):
        download(None, tmp_path, url=server.url("pets.zip"), sha256=PETS_SHA)
    assert (tmp_path / "pets.zip.part").stat().st_size == 1000
    calls: list[tuple[int, int | None]] = []
    root = download(None, tmp_path, url=server.url("pets.zip"), sha256=PETS_SHA,
                    progress=lambda done, total: calls.append((done, total)))
    assert server.seen_ranges == ["bytes=1000-"]
    assert calls[0] == (1000, len(PETS_ZIP))
    assert (root / "cats" / "c2.jpg").exists()
    assert not (tmp_path / "pets.zip.part").exists()


def test_server_that_ignores_range_restarts_the_download(server: Served, tmp_path: Path) -> None:
    server.files["pets.zip"] = PETS_ZIP
    server.ranges = False
    (tmp_path / "pets.zip.part").write_bytes(b"stale bytes from another file")
    download(None, tmp_path, url=server.url("pets.zip"), sha256=PETS_SHA)
    assert server.seen_ranges  # it asked ...
    assert (tmp_path / "pets.zip").read_bytes() == PETS_ZIP  # ... and did not append to the stale part


def test_file_url_is_read_in_place(tmp_path: Path) -> None:
    archive = tmp_path / "elsewhere" / "pets.zip"
    archive.parent.mkdir()
    archive.write_bytes(PETS_ZIP)
    root = download(None, tmp_path / "data", url=archive.as_uri(), sha256=PETS_SHA)
    assert root == tmp_path / "data" / "pets"
    assert not (tmp_path / "data" / "pets.zip").exists()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_url_is_one_line_suggesting_a_mirror(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{closed_port()}/pets.zip"
    with pytest.raises(DownloadError) as caught:
        download(None, tmp_path, url=url)
    message = str(caught.value)
    assert message.startswith(f"cannot reach {url} (")
    assert message.endswith("check the network, or pass --url with a mirror or a file:// path to the "
                            "archive downloaded elsewhere")
    assert "\n" not in message


def test_missing_file_on_the_server(server: Served, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match=r"^download failed: HTTP 404 Not Found from http://127\.0\.0\.1:\d+/gone\.zip$"):
        download(None, tmp_path, url=server.url("gone.zip"))


def test_existing_user_files_are_never_overwritten(tmp_path: Path) -> None:
    archive = tmp_path / "two.zip"
    archive.write_bytes(make_zip({"pets/cats/c.jpg": b"new", "README.txt": b"new"}))
    target = tmp_path / "data"
    target.mkdir()
    (target / "README.txt").write_text("mine")
    with pytest.raises(DownloadError, match="would overwrite .*README.txt; move it away or choose another --to"):
        download(None, target, url=archive.as_uri())
    assert (target / "README.txt").read_text() == "mine"
    assert sorted(p.name for p in target.iterdir()) == ["README.txt"]


def test_unknown_dataset_and_scheme(tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="unknown dataset 'kittens'; known: petimages, cats_and_dogs_filtered"):
        download("kittens", tmp_path)
    with pytest.raises(DownloadError, match="unsupported URL 'ftp://x/y.zip': use http://, https:// or file://"):
        download(None, tmp_path, url="ftp://x/y.zip")


def test_not_an_archive(tmp_path: Path) -> None:
    page = tmp_path / "page.zip"
    page.write_text("<html>Access denied</html>")
    with pytest.raises(DownloadError, match="is neither a zip nor a tar archive"):
        download(None, tmp_path / "out", url=page.as_uri())


# --- command line --------------------------------------------------------------------------------


def test_cli_download(server: Served, tmp_path: Path) -> None:
    from catdog.cli import main

    server.files["pets.zip"] = PETS_ZIP
    runner = CliRunner()
    result = runner.invoke(main, ["download", "--url", server.url("pets.zip"), "--sha256", PETS_SHA,
                                  "--to", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"photos in {tmp_path / 'pets'}" in result.output
    again = runner.invoke(main, ["download", "--url", server.url("pets.zip"), "--to", str(tmp_path)])
    assert again.exit_code == 0, again.output


def test_cli_download_failure_is_one_line_and_exit_1(tmp_path: Path) -> None:
    from catdog.cli import main

    url = f"http://127.0.0.1:{closed_port()}/pets.zip"
    result = CliRunner().invoke(main, ["download", "--url", url, "--to", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.startswith(f"Error: cannot reach {url}")
    assert result.output.count("\n") == 1


# --- faults (issue 12): a failed check leaves nothing a rerun trusts ----------------------------


def test_a_failed_download_leaves_no_folder_it_made(server: Served, tmp_path: Path) -> None:
    from catdog.cli import main

    to = tmp_path / "data" / "pets"
    result = CliRunner().invoke(main, ["download", "--url", server.url("missing.zip"), "--to", str(to)])
    assert result.exit_code == 1
    assert result.output == f"Error: download failed: HTTP 404 Not Found from {server.url('missing.zip')}\n"
    assert list(tmp_path.iterdir()) == []  # neither data/ nor data/pets/ stays behind
    # A download cut short keeps its folder: the .part file in it is resumed by the next run.
    server.files["pets.zip"] = PETS_ZIP
    server.cut_after = 1000
    with pytest.raises(DownloadError, match="rerun to resume"):
        download(None, to, url=server.url("pets.zip"))
    assert [p.name for p in to.iterdir()] == ["pets.zip.part"]


def test_short_content_length_leaves_no_archive_a_rerun_would_trust(server: Served, tmp_path: Path) -> None:
    server.files["pets.zip"] = PETS_ZIP
    server.short_length = len(PETS_ZIP) // 2  # the server claims and sends half the archive
    with pytest.raises(DownloadError) as caught:
        download(None, tmp_path, url=server.url("pets.zip"))
    assert str(caught.value) == (
        f"the download from {server.url('pets.zip')} was deleted: it is neither a zip nor a tar archive "
        "(cut short, or an error page?); rerun to download again")
    assert list(tmp_path.iterdir()) == []
    server.short_length = None
    assert download(None, tmp_path, url=server.url("pets.zip")) == tmp_path / "pets"


def test_zip_bomb_is_refused_by_its_expansion_ratio(server: Served, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("pets/cats/zeros.jpg", b"\0" * (40 * 1024 * 1024))  # 40 MB of zeros, ~40 KB packed
    server.files["bomb.zip"] = buffer.getvalue()
    with pytest.raises(DownloadError, match=r"^unsafe archive bomb\.zip: \d[\d,]* bytes would expand to "
                                            r"41,943,040 \(more than 100x\); not extracted$"):
        download(None, tmp_path, url=server.url("bomb.zip"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.zip"]  # nothing extracted


@pytest.mark.parametrize("tail", ["..", "", "."])
def test_url_whose_last_part_is_not_a_file_name(server: Served, tmp_path: Path, tail: str) -> None:
    server.files[f"x/{tail}"] = PETS_ZIP
    url = f"{server.base}/x/{tail}"
    from catdog.cli import main

    result = CliRunner().invoke(main, ["download", "--url", url, "--to", str(tmp_path)])
    assert result.exit_code == 0, result.output
    # Named by the last real part of the path ("x/" and "x/." are x), else "download"; inside --to.
    assert (tmp_path / ("download" if tail == ".." else "x")).read_bytes() == PETS_ZIP
    assert (tmp_path / "pets" / "cats" / "c1.jpg").is_file()
