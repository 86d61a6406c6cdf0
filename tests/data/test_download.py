"""PTB-XL download: fails fast offline (real network call), resumes with HTTP Range against a local server."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ecglang.data.download import (
    PTBXL_BASE_URL,
    DownloadError,
    download_file,
    download_ptbxl,
    parse_sha256sums,
)


class RangeHandler(SimpleHTTPRequestHandler):
    """Static files with `Range: bytes=N-` support (SimpleHTTPRequestHandler has none), a request log,
    and two faults: drop the connection half-way once per path, or ignore Range altogether."""

    log: list[tuple[str, str | None]]
    truncate_once: set[str]
    ignore_range: bool = False

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self.log.append((self.path, self.headers.get("Range")))
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        rng = None if self.ignore_range else self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            start = int(rng[6:].split("-", 1)[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in self.truncate_once:
            self.truncate_once.discard(self.path)
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # the client sees a short read
            return
        self.wfile.write(body)


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = type("H", (RangeHandler,), {"log": [], "truncate_once": set(), "ignore_range": False})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/", handler
    httpd.shutdown()
    httpd.server_close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- offline: the real call, no mocks -------------------------------------------------------------
# Offline made deterministic, whether or not this machine reaches physionet.org: every request goes through a
# proxy at the discard port of this host, where nothing listens (connection refused at once).
UNREACHABLE_PROXY = "http://127.0.0.1:9"
PROXY_VARS = ("https_proxy", "http_proxy", "HTTPS_PROXY", "HTTP_PROXY")


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PROXY_VARS:
        monkeypatch.setenv(name, UNREACHABLE_PROXY)
    for name in ("no_proxy", "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def test_offline_download_fails_fast_with_instructions(tmp_path, offline):
    start = time.monotonic()
    with pytest.raises(DownloadError) as info:
        download_ptbxl(tmp_path / "ptbxl", progress=False)
    assert time.monotonic() - start < 2.0
    msg = str(info.value)
    assert "physionet.org" in msg and "manually" in msg and "127.0.0.1:9" in msg  # the proxy was the way out
    assert PTBXL_BASE_URL in msg and "ecglang data build ptbxl FOLDER" in msg
    assert not any((tmp_path / "ptbxl").glob("**/*.part"))


def test_offline_cli_exits_1_with_one_line_error(tmp_path, offline):
    # A hang guard, not a speed target (those live in benchmarks/): retrying with back-off would run past it.
    proc = subprocess.run(
        [sys.executable, "-m", "ecglang.cli.main", "data", "download", "ptbxl", str(tmp_path / "d")],
        capture_output=True, text=True, timeout=60, env=dict(os.environ),  # the proxy variables set above
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: cannot reach physionet.org") and "Traceback" not in proc.stderr
    assert "127.0.0.1:9" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


# --- resuming against a local server ----------------------------------------------------------------


def test_partial_file_is_completed_with_a_range_request(server, tmp_path):
    root, url, handler = server
    data = os.urandom(200_000)
    (root / "data.bin").write_bytes(data)
    dest = tmp_path / "out" / "data.bin"
    dest.parent.mkdir()
    Path(str(dest) + ".part").write_bytes(data[:70_000])
    assert download_file(url + "data.bin", dest, sha256=sha(data)) == "resumed"
    assert dest.read_bytes() == data
    assert not Path(str(dest) + ".part").exists()
    assert handler.log == [("/data.bin", "bytes=70000-")]
    # Complete now: a second call sends no request at all.
    assert download_file(url + "data.bin", dest, sha256=sha(data)) == "skipped"
    assert len(handler.log) == 1


def test_dropped_connection_keeps_part_then_resumes(server, tmp_path):
    root, url, handler = server
    data = os.urandom(300_000)
    (root / "big.bin").write_bytes(data)
    handler.truncate_once.add("/big.bin")
    dest = tmp_path / "big.bin"
    with pytest.raises(DownloadError, match="run again to resume"):
        download_file(url + "big.bin", dest, sha256=sha(data))
    part = Path(str(dest) + ".part")
    got = part.stat().st_size
    assert 0 < got < len(data) and part.read_bytes() == data[:got]
    assert download_file(url + "big.bin", dest, sha256=sha(data)) == "resumed"
    assert dest.read_bytes() == data
    assert handler.log[-1] == ("/big.bin", f"bytes={got}-")


def test_server_without_range_support_restarts(server, tmp_path):
    root, url, handler = server
    handler.ignore_range = True
    data = os.urandom(50_000)
    (root / "f.bin").write_bytes(data)
    dest = tmp_path / "f.bin"
    Path(str(dest) + ".part").write_bytes(data[:1000])
    assert download_file(url + "f.bin", dest, sha256=sha(data)) == "downloaded"  # 200: written from zero
    assert dest.read_bytes() == data


def test_corrupt_partial_is_downloaded_again_and_bad_checksum_raises(server, tmp_path):
    root, url, handler = server
    data = os.urandom(40_000)
    (root / "f.bin").write_bytes(data)
    dest = tmp_path / "f.bin"
    Path(str(dest) + ".part").write_bytes(b"\xff" * 10_000)  # wrong bytes: resuming cannot verify
    assert download_file(url + "f.bin", dest, sha256=sha(data)) == "downloaded"
    assert dest.read_bytes() == data
    assert handler.log == [("/f.bin", "bytes=10000-"), ("/f.bin", None)]

    with pytest.raises(DownloadError, match="failed verification"):
        download_file(url + "f.bin", tmp_path / "g.bin", sha256="0" * 64)
    assert not (tmp_path / "g.bin").exists() and not (tmp_path / "g.bin.part").exists()
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(url + "nope.bin", tmp_path / "nope.bin")


def make_mirror(root: Path, with_sums: bool = True) -> dict[str, bytes]:
    files = {
        "ptbxl_database.csv": b"ecg_id,report\n1,sinusrhythmus normales ekg\n",
        "scp_statements.csv": b",description\nNORM,normal ECG\n",
        "LICENSE.txt": b"CC BY 4.0\n",
        "example_physionet.py": b"print('hi')\n",
        "RECORDS": b"records100/00000/00001_lr\nrecords500/00000/00001_hr\n",
        "records100/00000/00001_lr.hea": b"00001_lr 12 100 1000\n",
        "records100/00000/00001_lr.dat": os.urandom(24_000),
        "records500/00000/00001_hr.hea": b"00001_hr 12 500 5000\n",
        "records500/00000/00001_hr.dat": os.urandom(120_000),
    }
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    if with_sums:
        (root / "SHA256SUMS.txt").write_text("".join(f"{sha(d)} {rel}\n" for rel, d in files.items()))
    return files


def test_download_ptbxl_from_a_mirror_resumes_and_skips(server, tmp_path):
    root, url, handler = server
    files = make_mirror(root)
    dest = tmp_path / "ptbxl"
    dat = dest / "records500/00000/00001_hr.dat"
    dat.parent.mkdir(parents=True)
    Path(str(dat) + ".part").write_bytes(files["records500/00000/00001_hr.dat"][:5000])

    report = download_ptbxl(dest, base_url=url, rates=(500,), progress=False)
    assert report.failures == []
    assert report.n_files == 7 and report.downloaded == 6 and report.resumed == 1
    for rel, data in files.items():
        if rel.startswith("records100"):
            assert not (dest / rel).exists()
        else:
            assert (dest / rel).read_bytes() == data
    assert parse_sha256sums((dest / "SHA256SUMS.txt").read_text())[0][1] == "ptbxl_database.csv"

    handler.log.clear()
    again = download_ptbxl(dest, base_url=url, rates=(500,), progress=False)
    assert again.skipped == 7 and again.downloaded == again.resumed == 0
    assert handler.log == [("/SHA256SUMS.txt", None)]  # only the file list is fetched again


def test_download_ptbxl_without_sums_uses_records_and_lists_failures(server, tmp_path):
    root, url, _ = server
    files = make_mirror(root, with_sums=False)
    (root / "LICENSE.txt").unlink()
    report = download_ptbxl(tmp_path / "p", base_url=url, progress=False)
    assert [rel for rel, _ in report.failures] == ["LICENSE.txt"]
    assert "HTTP 404" in report.failures[0][1]
    assert report.downloaded == len(files) - 1
    assert (tmp_path / "p" / "records100/00000/00001_lr.dat").read_bytes() == files["records100/00000/00001_lr.dat"]


def test_unsafe_paths_in_the_file_list_are_refused(server, tmp_path):
    root, url, _ = server
    (root / "SHA256SUMS.txt").write_text(f"{'a' * 64} ../../etc/passwd\n")
    with pytest.raises(DownloadError, match="unsafe path"):
        download_ptbxl(tmp_path / "p", base_url=url, progress=False)


def test_parse_sha256sums():
    text = f"{'A' * 64}  records/x.dat\n{'b' * 64} *bin.dat\nnot a line\n"
    assert parse_sha256sums(text) == [("a" * 64, "records/x.dat"), ("b" * 64, "bin.dat")]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("physionet.org/files/ptb-xl/1.0.3/", "did you mean 'https://physionet.org/files/ptb-xl/1.0.3/'?"),
        ("file:///data/ptbxl-mirror/", "got 'file:///data/ptbxl-mirror/'"),
        ("ftp://mirror.example/ptb-xl/", "got 'ftp://mirror.example/ptb-xl/'"),
        ("https:///ptb-xl/", "with a host, got 'https:///ptb-xl/'"),
        ("http://mirror.example:port/", "got 'http://mirror.example:port/'"),
    ],
)
def test_a_base_url_that_is_not_http_is_a_usage_error(url: str, message: str, tmp_path, capsys) -> None:
    """Was: "cannot reach  (name lookup for  failed ...); this machine seems to have no network connection"."""
    from ecglang.cli.main import main as cli
    from ecglang.errors import ConfigError

    with pytest.raises(SystemExit) as exit_:
        cli(["data", "download", "ptbxl", str(tmp_path / "d"), "--base-url", url])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "argument --base-url: must be an http(s) URL" in err and message in err and "network" not in err
    with pytest.raises(ConfigError, match="--base-url must be an http"):  # the library call too
        download_ptbxl(tmp_path / "d", base_url=url, progress=False)
    assert not (tmp_path / "d").exists()
