"""Download and check the files of known data sets (`bench data fetch NAME`).

Downloads go to `<data dir>/<file>.part` and resume from its length with an HTTP Range
request; the finished file is checked (size, then sha256 or md5) before it is renamed into
place, so a file under its final name has always passed its checks. Nothing here runs unless
the user asks for it.
"""
from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from bench.core.errors import BenchError
from bench.datasets.manifest import RemoteFile, data_dir, known

CHUNK = 1 << 20


def file_digest(path: Path, algorithm: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, algorithm).hexdigest()


def check_file(path: Path, remote: RemoteFile) -> None:
    """Raise BenchError naming the file unless it exists with the recorded size and checksum."""
    if not path.is_file():
        raise BenchError(f"{path}: missing; run `bench data fetch` for it or fix data.root")
    size = path.stat().st_size
    if remote.size is not None and size != remote.size:
        raise BenchError(f"{path}: size {size} bytes, expected {remote.size} (truncated or "
                         "another file); delete it and fetch again")
    for algorithm in ("sha256", "md5"):
        expected = getattr(remote, algorithm)
        if expected:
            actual = file_digest(path, algorithm)
            if actual != expected:
                raise BenchError(f"{path}: {algorithm} {actual} does not match the recorded "
                                 f"{expected}; delete it and fetch again")


def _open(url: str, start: int):
    request = urllib.request.Request(url, headers={"Range": f"bytes={start}-"} if start else {})
    try:
        return urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as err:
        if err.code == 416:             # nothing left past `start`: the part is complete
            return None
        raise BenchError(f"{url}: HTTP {err.code} {err.reason}; check the name or "
                         "BENCH_DATA_URL") from None
    except (urllib.error.URLError, OSError) as err:
        raise BenchError(f"{url}: cannot connect ({err}); check the network or "
                         "BENCH_DATA_URL") from None


def download(remote: RemoteFile, dest_dir: Path, show_progress: bool = True) -> Path:
    """Fetch remote into dest_dir (resuming a .part file), check it, return the final path."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / remote.filename
    part = final.with_name(final.name + ".part")
    start = part.stat().st_size if part.exists() else 0
    response = _open(remote.url, start)
    if response is not None:
        with response:
            resumed = response.status == 206
            total = response.headers.get("Content-Length")
            total = int(total) + (start if resumed else 0) if total else remote.size
            with open(part, "ab" if resumed else "wb") as out, Progress(
                    TextColumn(remote.filename), BarColumn(), DownloadColumn(),
                    TransferSpeedColumn(), TimeRemainingColumn(), disable=not show_progress,
                    transient=True) as progress:
                task = progress.add_task("fetch", total=total,
                                         completed=start if resumed else 0)
                try:
                    while chunk := response.read(CHUNK):
                        out.write(chunk)
                        progress.advance(task, len(chunk))
                except OSError as err:
                    raise BenchError(f"{remote.url}: download interrupted ({err}); run the "
                                     "same fetch again to resume") from None
    got = part.stat().st_size if part.exists() else 0
    if remote.size is not None and got < remote.size:
        raise BenchError(f"{final}: download stopped at {got} of {remote.size} bytes; run the "
                         "same fetch again to resume")
    try:
        check_file(part, remote)
    except BenchError as err:
        part.unlink(missing_ok=True)    # a complete but wrong file cannot be resumed
        raise BenchError(str(err).replace(str(part), str(final))) from None
    os.replace(part, final)
    return final


def fetch(name: str, root: str = "", show_progress: bool = True) -> Path:
    """Download the known set `name` unless a checked copy is already in the data dir."""
    remote = known(name).file
    final = data_dir(root) / remote.filename
    if final.is_file():
        try:
            check_file(final, remote)
            return final
        except BenchError:
            final.unlink()              # a bad copy under the final name: fetch afresh
    return download(remote, data_dir(root), show_progress)
