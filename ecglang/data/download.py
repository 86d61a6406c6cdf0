"""Resumable download of PTB-XL from PhysioNet (standard library only: urllib and hashlib).

`download_ptbxl(dest)` mirrors `https://physionet.org/files/ptb-xl/1.0.3/`:

1. Connectivity is checked first with a short timeout (name lookup and TCP connect, through the
   HTTP(S) proxy when one is configured), so that an offline machine fails in about a second with
   instructions instead of hanging.
2. The file list and checksums come from `SHA256SUMS.txt` (saved into `dest`); if the server has
   none, the list is built from `RECORDS` (header + signal file of each record, plus the top-level
   metadata files) and files are verified by size only.
3. A file already present with the right SHA-256 is skipped. Otherwise bytes go to `NAME.part`; an
   existing `.part` is resumed with an HTTP `Range: bytes=N-` request (a server that ignores Range
   and answers 200 restarts it from zero). The finished file is verified and renamed into place;
   a resumed file that fails verification is downloaded once more from scratch.
4. One failing file does not stop the others; failures are returned (and printed by the CLI).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from ecglang.errors import ConfigError, EcgLangError

PTBXL_VERSION = "1.0.3"
PTBXL_BASE_URL = f"https://physionet.org/files/ptb-xl/{PTBXL_VERSION}/"
PTBXL_PAGE = f"https://physionet.org/content/ptb-xl/{PTBXL_VERSION}/"
PTBXL_TOP_LEVEL_FILES = (
    "ptbxl_database.csv",
    "scp_statements.csv",
    "RECORDS",
    "LICENSE.txt",
    "example_physionet.py",
)
_USER_AGENT = "ecglang-downloader (+https://github.com/)"


class DownloadError(EcgLangError, OSError):
    """A download could not be done: no network, HTTP error, checksum mismatch, interrupted transfer."""


@dataclass
class DownloadReport:
    """What `download_ptbxl` did."""

    dest: Path
    n_files: int = 0
    downloaded: int = 0
    resumed: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)

    def summary(self) -> str:
        text = (
            f"{self.dest}: {self.n_files} files — {self.downloaded} downloaded, {self.resumed} resumed, "
            f"{self.skipped} already complete, {len(self.failures)} failed"
        )
        return text + "".join(f"\n  {rel}: {why}" for rel, why in self.failures[:20])


def offline_message(url: str, reason: str) -> str:
    return (
        f"cannot reach {urllib.parse.urlsplit(url).netloc} ({reason}); this machine seems to have no network "
        f"connection. Download PTB-XL {PTBXL_VERSION} manually on a machine with internet (the ZIP from "
        f"{PTBXL_PAGE}, or `wget -r -N -c -np {PTBXL_BASE_URL}`), copy the folder here and pass it on: "
        "`ecglang data build ptbxl FOLDER --out DIR`."
    )


def check_base_url(url: str) -> str:
    """`url` when it is an http:// or https:// URL with a host; `ConfigError` naming it otherwise. Without this a
    URL with no scheme (`physionet.org/files/...`) or another one (`file:///mirror/`) got an empty host and the
    message "this machine seems to have no network connection"."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ConfigError(f"--base-url must be an http(s) URL, got {url!r}: {exc}") from None
    if parts.scheme.lower() not in ("http", "https") or not host:
        hint = "" if "://" in url else f" (did you mean 'https://{url}'?)"
        raise ConfigError(f"--base-url must be an http(s) URL with a host, got {url!r}{hint}")
    return url


def _endpoint(url: str) -> tuple[str, int]:
    """Host and port that a request for `url` connects to (the proxy's, when one applies)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        p = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        return p.hostname or "", p.port or (443 if p.scheme == "https" else 80)
    return host, parts.port or (443 if parts.scheme == "https" else 80)


def check_connectivity(url: str = PTBXL_BASE_URL, timeout: float = 1.5) -> None:
    """Raise `DownloadError` (with what to do instead) unless `url`'s server accepts a TCP connection
    within `timeout` seconds in total. The name lookup runs in a helper thread because
    `getaddrinfo` has no timeout of its own."""
    host, port = _endpoint(url)
    start = time.monotonic()
    result: dict[str, object] = {}

    def resolve() -> None:
        try:
            result["addrs"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            result["error"] = exc

    worker = threading.Thread(target=resolve, daemon=True)  # a stuck lookup must not keep Python alive
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        raise DownloadError(offline_message(url, f"name lookup for {host} timed out after {timeout:g} s"))
    if "error" in result:
        raise DownloadError(offline_message(url, f"name lookup for {host} failed: {result['error']}"))
    last: OSError | None = None
    for family, kind, proto, _, addr in result["addrs"]:  # type: ignore[union-attr]
        remaining = timeout - (time.monotonic() - start)
        if remaining <= 0:
            break
        try:
            with socket.socket(family, kind, proto) as s:
                s.settimeout(remaining)
                s.connect(addr)
                return
        except OSError as exc:
            last = exc
    raise DownloadError(offline_message(url, f"no TCP connection to {host}:{port}: {last or 'timed out'}"))


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk_size):
            h.update(block)
    return h.hexdigest()


def parse_sha256sums(text: str) -> list[tuple[str, str]]:
    """`(sha256, relative_path)` pairs from `sha256sum` output (`HASH  path` or `HASH *path`)."""
    out = []
    for line in text.splitlines():
        parts = line.strip().split(maxsplit=1)
        if len(parts) == 2 and len(parts[0]) == 64:
            out.append((parts[0].lower(), parts[1].lstrip("*").strip()))
    return out


def _safe_relpath(rel: str) -> str:
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts or not p.parts:
        raise DownloadError(f"refusing unsafe path {rel!r} from the file list")
    return str(p)


def _open(url: str, timeout: float, offset: int = 0) -> http.client.HTTPResponse:
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def fetch_text(url: str, timeout: float = 30.0) -> str:
    try:
        with _open(url, timeout) as resp:
            return resp.read().decode("utf-8")
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise DownloadError(f"{url}: {exc}") from exc


def download_file(
    url: str,
    dest: str | os.PathLike,
    sha256: str | None = None,
    size: int | None = None,
    timeout: float = 30.0,
    chunk_size: int = 1 << 16,
    on_bytes: Callable[[int], None] | None = None,
    _retry: bool = True,
) -> str:
    """Download `url` to `dest`, resuming `dest.part` when present. Returns `"skipped"` (already
    complete), `"downloaded"` or `"resumed"`. Raises `DownloadError`; an interrupted transfer keeps
    its `.part` file so that the next call resumes it."""
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    if dest.is_file():
        if sha256 is not None:
            if sha256_file(dest) == sha256:
                return "skipped"
        elif size is None or dest.stat().st_size == size:
            return "skipped"
        if not part.exists():
            os.replace(dest, part)  # a wrong/short file: treat it as a partial download
        else:
            dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    offset = part.stat().st_size if part.is_file() else 0
    if size is not None and offset > size:
        part.unlink()
        offset = 0
    resumed = False
    try:
        try:
            resp = _open(url, timeout, offset)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:  # nothing left to send: the part file is already whole
                resp = None
                resumed = True
            else:
                raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
        if resp is not None:
            with resp:
                length = resp.headers.get("Content-Length")
                if offset and resp.status == 206:
                    content_range = resp.headers.get("Content-Range", "")
                    if not content_range.startswith(f"bytes {offset}-"):
                        raise DownloadError(f"{url}: server answered range {content_range!r} to bytes={offset}-")
                    mode, resumed, start = "ab", True, offset
                else:  # 200: the server sent the whole file (no Range support, or nothing to resume)
                    mode, start = "wb", 0
                expected = start + int(length) if length and length.isdigit() else None
                with part.open(mode) as f:
                    while block := resp.read(chunk_size):
                        f.write(block)
                        if on_bytes is not None:
                            on_bytes(len(block))
                # http.client returns b"" (no error) when the server closes early: compare sizes.
                got = part.stat().st_size
                if expected is not None and got < expected:
                    raise DownloadError(
                        f"{url}: transfer interrupted at {got} of {expected} bytes; run again to resume"
                    )
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        if isinstance(exc, DownloadError):
            raise
        raise DownloadError(f"{url}: transfer interrupted ({exc}); run again to resume") from exc

    problem = None
    if size is not None and part.stat().st_size != size:
        problem = f"size {part.stat().st_size} != expected {size}"
    elif sha256 is not None and (got := sha256_file(part)) != sha256:
        problem = f"SHA-256 {got} != expected {sha256}"
    if problem:
        part.unlink()
        if resumed and _retry:  # the kept bytes may be what is wrong: one clean attempt
            download_file(url, dest, sha256, size, timeout, chunk_size, on_bytes, _retry=False)
            return "downloaded"
        raise DownloadError(f"{url}: downloaded file failed verification ({problem})")
    os.replace(part, dest)
    return "resumed" if resumed else "downloaded"


def ptbxl_file_list(
    base_url: str = PTBXL_BASE_URL, timeout: float = 30.0
) -> tuple[list[tuple[str | None, str]], str | None]:
    """`([(sha256 or None, relative path)], SHA256SUMS text or None)` for the PTB-XL release at `base_url`."""
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    try:
        sums = fetch_text(base_url + "SHA256SUMS.txt", timeout)
        entries: list[tuple[str | None, str]] = [(h, _safe_relpath(p)) for h, p in parse_sha256sums(sums)]
        if entries:
            return entries, sums
    except DownloadError as exc:
        if "HTTP 404" not in str(exc):
            raise
    records = fetch_text(base_url + "RECORDS", timeout).split()
    files = [*PTBXL_TOP_LEVEL_FILES]
    for rec in records:
        rec = _safe_relpath(rec)
        files += [rec + ".hea", rec + ".dat"]
    return [(None, f) for f in files], None


def download_ptbxl(
    dest: str | os.PathLike,
    base_url: str = PTBXL_BASE_URL,
    rates: Iterable[int] = (100, 500),
    timeout: float = 30.0,
    connect_timeout: float = 1.5,
    progress: bool = True,
) -> DownloadReport:
    """Download (or complete) PTB-XL into `dest`; see the module docstring. `rates` picks the record
    folders (`records100`, `records500`); metadata files are always fetched."""
    base_url = check_base_url(base_url)
    base_url = base_url if base_url.endswith("/") else base_url + "/"
    check_connectivity(base_url, connect_timeout)
    dest = Path(dest).expanduser()
    dest.mkdir(parents=True, exist_ok=True)
    entries, sums = ptbxl_file_list(base_url, timeout)
    if sums is not None:
        (dest / "SHA256SUMS.txt").write_text(sums, encoding="utf-8")
    wanted = {f"records{int(r)}" for r in rates}
    entries = [(h, rel) for h, rel in entries if not (rel.startswith("records") and rel.split("/", 1)[0] not in wanted)]
    report = DownloadReport(dest=dest, n_files=len(entries))
    for sha, rel in tqdm(entries, desc="PTB-XL files", unit="file", disable=not progress):
        try:
            outcome = download_file(base_url + urllib.parse.quote(rel), dest / rel, sha256=sha, timeout=timeout)
        except DownloadError as exc:
            report.failures.append((rel, str(exc)))
            continue
        setattr(report, outcome, getattr(report, outcome) + 1)
    return report
