"""Files pinned to a commit of a public repository: found in the cache, else downloaded, checked and cached.

No fairseq counterpart (fairseq's examples fetch their data with shell scripts); the shape is that of
``sklearn.datasets.fetch_*``: a cache folder, a download that is checked before it is kept, and errors that say
what to do. Every file is pinned by its git blob id at the pinned commit (``sha1(b"blob %d\\0" % len(data) +
data)``, what ``git ls-tree`` prints), so a file is checked against the repository's own record of it.

The cache mirrors the download's address: ``CACHE/OWNER/REPO/COMMIT/PATH`` holds
``BASE_URL/OWNER/REPO/COMMIT/PATH`` (``https://raw.githubusercontent.com`` unless ``$SCORELIB_DATA_URL`` says
otherwise), so a file fetched by hand goes where its address says. A download is written to a temporary file in
the same folder and renamed only once it is whole and its hash matches: the cache never holds half a file. One
process at a time downloads into a folder (:mod:`scorelib.locks`); a second waits, then finds the files there.
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from scorelib.errors import MissingFileError, ScorelibError
from scorelib.locks import FolderInUseError, acquire, release

logger = logging.getLogger(__name__)

DEFAULT_URL = "https://raw.githubusercontent.com"
TIMEOUT_S = 60  # seconds without an answer before a download is given up
LOCK_WAIT_S = 1800  # how long a second process waits for the first one's downloads
THREADS = 8  # downloads at once (the Mohler set is 351 small files)


class DownloadError(ScorelibError, OSError):
    """A data file that could not be fetched or failed its check; the message names the address and what to do."""


@dataclass(frozen=True)
class Source:
    """Files of one repository at one commit: ``files`` maps a path under ``folder`` to its git blob id."""

    repo: str
    commit: str
    folder: str
    files: dict

    def path(self, rel: str) -> str:
        return f"{self.folder}/{rel}" if self.folder else rel

    def url(self, rel: str, base: str | None = None) -> str:
        base = (base or os.environ.get("SCORELIB_DATA_URL") or DEFAULT_URL).rstrip("/")
        return f"{base}/{self.repo}/{self.commit}/{urllib.parse.quote(self.path(rel))}"

    def page(self) -> str:
        """The pinned commit's files on GitHub, for people."""
        return f"https://github.com/{self.repo}/tree/{self.commit}/{self.folder}".rstrip("/")

    def cache_folder(self, cache: Path) -> Path:
        return cache / self.repo / self.commit

    def cached(self, cache: Path, rel: str) -> Path:
        return self.cache_folder(cache) / self.path(rel)


def shown(path) -> str:
    """A path as printed for people: relative to the working folder where it is near, else with ``~`` for the home
    folder (a notebook's output then names no one's machine)."""
    path = Path(path)
    try:
        rel = os.path.relpath(path)
        if not rel.startswith(os.path.join(os.pardir, os.pardir, os.pardir)):
            return rel
    except ValueError:  # another drive (Windows)
        pass
    home = Path.home()
    return "~/" + str(path.relative_to(home)) if path.is_relative_to(home) else str(path)


def cache_dir(cache=None) -> Path:
    """``cache``, else ``$SCORELIB_CACHE``, else ``~/.cache/scorelib``."""
    return Path(cache or os.environ.get("SCORELIB_CACHE") or Path.home() / ".cache" / "scorelib").expanduser()


def blob_id(data: bytes) -> str:
    """The git blob id of ``data``: what ``git hash-object`` and ``git ls-tree`` print for a file holding it."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def file_blob_id(path: Path) -> str:
    h = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def read_only(folder: Path, err: OSError) -> DownloadError:
    return DownloadError(f"cache folder {folder} is not writable ({err.strerror or err}); set SCORELIB_CACHE to a "
                         f"folder you can write, or SCORELIB_DATA to a local copy of the data sets")


def check_cached(source: Source, cache: Path) -> list[str]:
    """The pinned files not yet in the cache; those there are checked against their pins."""
    missing = []
    for rel, pin in source.files.items():
        path = source.cached(cache, rel)
        if not path.is_file():
            missing.append(rel)
        elif (got := file_blob_id(path)) != pin:
            raise DownloadError(f"{path}: hash mismatch: git blob {got}, pinned {pin} (changed after it was "
                                f"checked?); delete it and it is downloaded again from {source.url(rel)}")
    return missing


def is_html(content_type: str, head: bytes) -> bool:
    start = head.lstrip()[:15].lower()
    return content_type == "text/html" or start.startswith((b"<!doctype html", b"<html"))


def download(url: str, dest: Path, pin: str, by_hand: Path) -> int:
    """Fetch ``url`` into ``dest`` (atomically, once its git blob id is ``pin``); returns its bytes."""
    request = urllib.request.Request(url, headers={"User-Agent": "scorelib (python urllib)"})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}; the address or $SCORELIB_DATA_URL is wrong, or the "
                            f"file is gone: put it there by hand: {by_hand}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
        reason = getattr(e, "reason", None) or e
        raise DownloadError(f"cannot download {url} ({reason}); offline? put the file there by hand: {by_hand} "
                            f"(or set SCORELIB_DATA to a local copy of the data sets)") from None
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.{threading.get_ident()}.part")
    try:
        with response:
            declared = response.headers.get("Content-Length")
            content_type = response.headers.get_content_type()
            size, head = 0, b""
            try:
                with open(tmp, "xb") as out:
                    while chunk := response.read(1 << 16):
                        out.write(chunk)
                        size += len(chunk)
                        head = head if len(head) >= 512 else (head + chunk)[:512]
            except http.client.IncompleteRead as e:
                size += len(e.partial)
                raise DownloadError(f"{url}: truncated: the connection closed after {size:,} of {declared} bytes; "
                                    f"nothing was kept, run again") from None
            except PermissionError as e:
                raise read_only(dest.parent, e) from None
            except (TimeoutError, ConnectionError, http.client.HTTPException) as e:
                raise DownloadError(f"{url}: the download broke off after {size:,} bytes ({e}); nothing was kept, "
                                    f"run again") from None
        if declared is not None and declared.isdigit() and size != int(declared):
            raise DownloadError(f"{url}: truncated: {size:,} of {int(declared):,} bytes arrived; nothing was kept, "
                                f"run again")
        if is_html(content_type, head):
            raise DownloadError(f"{url}: an HTML page arrived, not the data file (an error, login or proxy page?); "
                                f"nothing was kept; check the address, or put the file there by hand: {by_hand}")
        got = file_blob_id(tmp)
        if got != pin:
            raise DownloadError(f"{url}: hash mismatch: git blob {got}, pinned {pin} ({size:,} bytes: a truncated, "
                                f"changed or wrong file); nothing was kept")
        os.replace(tmp, dest)
        return size
    finally:
        tmp.unlink(missing_ok=True)


def take_lock(folder: Path, what: str) -> bool:
    """``folder``'s lock, waiting (with one log line) while another process downloads into it."""
    waited, start = False, time.monotonic()
    while True:
        try:
            return acquire(folder, what)
        except FolderInUseError as e:
            if not waited:
                logger.warning("%s; waiting for it (up to %d min)", e, LOCK_WAIT_S // 60)
                waited = True
            if time.monotonic() - start > LOCK_WAIT_S:
                raise
            time.sleep(0.2)
        except OSError as e:
            raise read_only(folder, e) from None


def fetch(source: Source, cache=None, allow_download: bool = True) -> tuple[Path, str]:
    """The folder holding ``source``'s files, downloading the missing ones.

    Args:
        source (Source): the pinned files.
        cache: the cache folder (default: :func:`cache_dir`).
        allow_download (bool): False refuses to download a missing file (one line naming it).

    Returns:
        tuple: the folder (``cache/OWNER/REPO/COMMIT/FOLDER``) and where the files came from, in words.
    """
    cache = cache_dir(cache)
    top = source.cache_folder(cache)
    missing = check_cached(source, cache)
    if not missing:
        return top / source.folder, f"the cache ({shown(top)})"
    by_hand = source.cached(cache, missing[0])
    if not allow_download:
        raise MissingFileError(f"{by_hand}: not in the cache and downloading is off; download {source.url(missing[0])}"
                               f" there by hand ({len(missing)} of {len(source.files)} files missing)")
    try:
        top.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise read_only(top, e) from None
    took = take_lock(top, f"the data cache {top}")
    try:
        missing = check_cached(source, cache)  # another process may have fetched them while this one waited
        folders = {source.cached(cache, rel).parent for rel in missing}
        try:
            for folder in sorted(folders):
                folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise read_only(top, e) from None
        start = time.perf_counter()
        with ThreadPoolExecutor(max_workers=min(THREADS, max(len(missing), 1))) as pool:
            jobs = [pool.submit(download, source.url(rel), source.cached(cache, rel), source.files[rel],
                                source.cached(cache, rel)) for rel in missing]
            sizes = []
            try:
                sizes = [job.result() for job in jobs]
            finally:
                for job in jobs:
                    job.cancel()
    finally:
        if took:
            release(top)
    if missing:
        logger.info("downloaded %d file(s), %.1f MB, in %.1f s into %s", len(missing), sum(sizes) / 2 ** 20,
                    time.perf_counter() - start, top)
        return top / source.folder, f"a download from {source.url(missing[0]).rsplit('/' + source.commit, 1)[0]}" \
                                    f" at {source.commit[:12]}, cached in {shown(top)}"
    return top / source.folder, f"the cache ({shown(top)})"
