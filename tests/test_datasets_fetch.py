"""`bench data fetch/verify/list` and resumable downloads from a loopback HTTP server."""
import hashlib
import http.server
import threading

import numpy as np
import pytest
from typer.testing import CliRunner

from bench.cli.data import data_app
from bench.core.errors import BenchError
from bench.datasets import manifest
from bench.datasets.fetch import download
from bench.datasets.manifest import KnownSet, RemoteFile

PAYLOAD = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves `files` by name, honouring `Range: bytes=N-` with 206 like Zenodo does."""
    files: dict[str, bytes] = {}
    ranges: list[str] = []

    def do_GET(self):
        body = self.files.get(self.path.lstrip("/"))
        if body is None:
            self.send_error(404)
            return
        start, status = 0, 200
        if rng := self.headers.get("Range"):
            self.ranges.append(rng)
            start, status = int(rng.removeprefix("bytes=").rstrip("-")), 206
            if start >= len(body):
                self.send_error(416)
                return
        self.send_response(status)
        self.send_header("Content-Length", str(len(body) - start))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.end_headers()
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    RangeHandler.files, RangeHandler.ranges = {}, []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("BENCH_DATA_URL", f"http://127.0.0.1:{httpd.server_address[1]}")
    yield RangeHandler
    httpd.shutdown()
    httpd.server_close()


def _remote(body=PAYLOAD, name="blob.bin"):
    return RemoteFile(name, "https://example.invalid", size=len(body),
                      sha256=hashlib.sha256(body).hexdigest())


def test_download_resumes_partial_file(server, tmp_path):
    server.files["blob.bin"] = PAYLOAD
    (tmp_path / "blob.bin.part").write_bytes(PAYLOAD[:123_456])
    path = download(_remote(), tmp_path, show_progress=False)
    assert path.read_bytes() == PAYLOAD and server.ranges == ["bytes=123456-"]
    assert not (tmp_path / "blob.bin.part").exists()


def test_download_rejects_wrong_bytes(server, tmp_path):
    server.files["blob.bin"] = PAYLOAD[::-1]
    with pytest.raises(BenchError, match="blob.bin: sha256 .* does not match"):
        download(_remote(), tmp_path, show_progress=False)
    assert not (tmp_path / "blob.bin").exists() and not (tmp_path / "blob.bin.part").exists()


def test_download_short_and_missing(server, tmp_path):
    server.files["blob.bin"] = PAYLOAD[:1000]
    with pytest.raises(BenchError, match="stopped at 1000 of 300000 bytes"):
        download(_remote(), tmp_path, show_progress=False)
    assert (tmp_path / "blob.bin.part").stat().st_size == 1000   # kept for resuming
    with pytest.raises(BenchError, match="HTTP 404"):
        download(_remote(name="other.bin"), tmp_path, show_progress=False)


@pytest.fixture
def tiny_pathmnist(server, monkeypatch):
    """Serve a small MedMNIST-layout file registered as 'pathmnist' with its md5 and counts."""
    import io
    rng = np.random.default_rng(1)
    arrays = {}
    for s, n in (("train", 9), ("val", 9), ("test", 9)):
        arrays[f"{s}_images"] = rng.integers(0, 256, (n, 28, 28, 3), dtype=np.uint8)
        arrays[f"{s}_labels"] = np.arange(n, dtype=np.uint8).reshape(-1, 1)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    server.files["pathmnist.npz"] = buf.getvalue()
    real = manifest.KNOWN["pathmnist"]
    monkeypatch.setitem(manifest.KNOWN, "pathmnist", KnownSet(**{
        **real.__dict__, "counts": {"train": 9, "val": 9, "test": 9},
        "file": RemoteFile("pathmnist.npz", "https://example.invalid", size=len(buf.getvalue()),
                           md5=hashlib.md5(buf.getvalue()).hexdigest())}))


def test_cli_fetch_then_verify(tiny_pathmnist, tmp_path):
    runner = CliRunner()
    root = str(tmp_path / "data")
    result = runner.invoke(data_app, ["fetch", "pathmnist", "--root", root, "--quiet"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "pathmnist.npz").is_file()
    result = runner.invoke(data_app, ["verify", "pathmnist", "--root", root])
    assert result.exit_code == 0 and "OK pathmnist: 9 classes, train 9" in result.output
    result = runner.invoke(data_app, ["list", "--root", root])
    assert "kather2016" in result.output and "present" in result.output


def test_cli_errors_are_bench_errors(server, tmp_path):
    runner = CliRunner()
    result = runner.invoke(data_app, ["fetch", "nosuchset", "--root", str(tmp_path)])
    assert isinstance(result.exception, BenchError) and "known:" in str(result.exception)
    result = runner.invoke(data_app, ["verify", str(tmp_path / "nothing")])
    assert isinstance(result.exception, BenchError)
    # the published Kather zip is not on the test server
    result = runner.invoke(data_app, ["fetch", "kather2016", "--root", str(tmp_path), "--quiet"])
    assert isinstance(result.exception, BenchError) and "HTTP 404" in str(result.exception)


def test_every_medmnist_file_is_checked_against_its_published_md5():
    files = [manifest.KNOWN[manifest.medmnist_name(base, size)].file
             for base in manifest.MEDMNIST_BASES for size in manifest.MEDMNIST_SIZES]
    assert all(len(f.md5 or "") == 32 and set(f.md5) <= set("0123456789abcdef") for f in files)
    assert len({f.md5 for f in files}) == len(files) == 7 * 4
    # spot checks against medmnist 3.0.2's medmnist/info.py
    assert manifest.KNOWN["dermamnist_128"].file.md5 == "2defd784463fa5243564e855ed717de1"
    assert manifest.KNOWN["organamnist"].file.md5 == "68e3f8846a6bd62f0c9bf841c0d9eacc"
