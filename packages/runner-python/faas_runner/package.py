"""Finds a packaged function's root directory (docs/packages.md).

Either the spec's ``dir`` as given, or a pull from its registry: the OCI
manifest by digest (sha256 checked), then each layer blob streamed to a spool
file (its size capped at the manifest's) and checked (size, sha256) before
anything of it is unpacked, then gunzipped and untarred with our own member
checks (no absolute names, no ``..``, no links leaving the root, no devices,
at most so many entries and header bytes; Python 3.11.2 has no ``tarfile``
extraction filters) into a temporary directory that is renamed to
``<cache dir>/<hex>`` (``$TMPDIR/faas-packages`` by default) once every layer
is in.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shutil
import socket
import stat
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from typing import Any, BinaryIO

MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
CONFIG_MEDIA_TYPE = "application/vnd.faas.package.config.v1+json"
LAYER_MEDIA_TYPE = "application/vnd.oci.image.layer.v1.tar+gzip"
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_BYTES = 1024 * 1024 * 1024
DEFAULT_PULL_TIMEOUT_MS = 60_000
DEFAULT_MAX_ENTRIES = 100_000
# The largest pax extended header or GNU long name/link header accepted.
MAX_TAR_HEADER_BYTES = 64 * 1024
_DIGEST = re.compile(r"sha256:[a-f0-9]{64}")
_CHUNK = 256 * 1024


@dataclass(frozen=True)
class Package:
    digest: str
    dir: str | None = None
    registry: str | None = None
    repository: str | None = None

    def describe(self) -> str:
        where = self.dir if self.dir is not None else f"{self.registry}/{self.repository}"
        return f"package {self.digest} ({where})"


class PackageError(Exception):
    """The package cannot be had; the message names it and says why."""


class _Failure(Exception):
    """What went wrong, without the package's name."""


_pulls: dict[str, str] = {}
_pull_lock = threading.Lock()


def package_root(pkg: Package, cache_dir: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
                 timeout_ms: int = DEFAULT_PULL_TIMEOUT_MS, max_entries: int = DEFAULT_MAX_ENTRIES) -> str:
    """The package's root directory; raises PackageError."""
    try:
        if pkg.dir is not None:
            if not os.path.isdir(pkg.dir):
                raise _Failure(f"{pkg.dir} is not a directory")
            return pkg.dir
        with _pull_lock:  # one pull at a time; a second one of the same digest reuses the first
            root = _pulls.get(pkg.digest)
            if root is None or not os.path.isdir(root):
                cache = cache_dir or os.path.join(tempfile.gettempdir(), "faas-packages")
                limits = _Limits(max_bytes, max_entries)
                root = _pull(pkg, cache, limits, time.monotonic() + timeout_ms / 1000, timeout_ms)
                _pulls[pkg.digest] = root
            return root
    except _Failure as err:
        raise PackageError(f"{pkg.describe()}: {err}") from None
    except Exception as err:  # noqa: BLE001 - any surprise still names the package
        raise PackageError(f"{pkg.describe()}: {type(err).__name__}: {err}") from err


@dataclass(frozen=True)
class _Limits:
    max_bytes: int
    max_entries: int


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def _ours_dir(st: os.stat_result) -> bool:
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()


def _check_cache_dir(cache: str) -> None:
    """Creates the cache directory (0700) if need be, then refuses it unless it is a
    real directory (not a symbolic link) owned by our uid that neither group nor
    others may write to: whoever can write there can plant a package under a
    digest's name."""
    try:
        os.makedirs(cache, mode=0o700, exist_ok=True)
    except OSError as err:
        raise _Failure(f"cannot create the package cache directory {cache}: {err}") from None
    st = os.lstat(cache)

    def refuse(why: str) -> None:
        raise _Failure(f"the package cache directory {cache} {why}: refusing to use it (FAAS_PACKAGE_CACHE_DIR)")

    if stat.S_ISLNK(st.st_mode):
        refuse("is a symbolic link")
    if not stat.S_ISDIR(st.st_mode):
        refuse("is not a directory")
    if st.st_uid != os.getuid():
        refuse(f"is owned by uid {st.st_uid}, not {os.getuid()}")
    if st.st_mode & 0o022:
        refuse(f"is writable by its group or others (mode {stat.S_IMODE(st.st_mode):o})")


def _pull(pkg: Package, cache: str, limits: _Limits, deadline: float, timeout_ms: int) -> str:
    hexdigest = pkg.digest[len("sha256:"):]
    final = os.path.join(cache, hexdigest)
    _check_cache_dir(cache)
    existing = _lstat(final)
    if existing is not None:
        if _ours_dir(existing):
            return final
        raise _Failure(f"{final} exists and is not a directory owned by uid {os.getuid()}: refusing to use it")
    # The pull's own directory: the package root being built, and beside it (never inside) the blobs' spool files.
    tmp = tempfile.mkdtemp(prefix=f".pull-{hexdigest[:12]}-", dir=cache)
    root = os.path.join(tmp, "root")
    clock = _Deadline(deadline, timeout_ms)
    try:
        os.mkdir(root, 0o700)
        base = f"{pkg.registry}/v2/{pkg.repository}"
        body = _fetch_manifest(f"{base}/manifests/{pkg.digest}", clock)
        actual = "sha256:" + hashlib.sha256(body).hexdigest()
        if actual != pkg.digest:
            raise _Failure(f"digest mismatch: the registry's manifest has digest {actual}")
        layers = _parse_manifest(body, limits.max_bytes)
        guard = _Guard(root, limits)
        for i, layer in enumerate(layers):
            spool = os.path.join(tmp, f"layer-{i}.blob")
            _fetch_blob(f"{base}/blobs/{layer['digest']}", layer, spool, clock)
            _extract_layer(spool, layer, guard, clock)
            os.unlink(spool)
        _check_symlinks(root)
        try:
            os.rename(root, final)
        except OSError:
            there = _lstat(final)
            if there is None or not _ours_dir(there):  # else another process got there first: same content
                raise
        shutil.rmtree(tmp, ignore_errors=True)
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


class _Deadline:
    def __init__(self, at: float, timeout_ms: int) -> None:
        self.at = at
        self.timeout_ms = timeout_ms

    def left(self) -> float:
        left = self.at - time.monotonic()
        if left <= 0:
            raise _Failure(f"pull did not finish within {self.timeout_ms} ms")
        return left


# How long a refused connection is tried again: a pod just started can be refused by the registry's
# NetworkPolicy until the network plugin has learnt its address (about 0.5 s seen with kube-router).
_REFUSED_RETRY_S = 1.5
_REFUSED_RETRY_EVERY_S = 0.1


def _open(url: str, clock: _Deadline, accept: str | None = None) -> Any:
    refused_until = time.monotonic() + _REFUSED_RETRY_S
    while True:
        try:
            return _open_once(url, clock, accept)
        except _Refused as refused:
            if time.monotonic() >= refused_until:
                raise _Failure(f"cannot reach the registry ({url}): {refused.reason}") from None
            time.sleep(min(_REFUSED_RETRY_EVERY_S, clock.left()))


class _Refused(Exception):
    def __init__(self, reason: object) -> None:
        super().__init__(str(reason))
        self.reason = reason


def _open_once(url: str, clock: _Deadline, accept: str | None) -> Any:
    req = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        # The socket timeout bounds each read; the deadline is checked between reads too.
        return urllib.request.urlopen(req, timeout=clock.left())  # noqa: S310 - http(s) only (validated)
    except urllib.error.HTTPError as err:
        code = message = ""
        try:
            first = json.loads(err.read(64 * 1024)).get("errors", [{}])[0]
            code = f" {first['code']}" if first.get("code") else ""
            message = f": {first['message']}" if first.get("message") else ""
        except (ValueError, AttributeError, IndexError, KeyError, TypeError, OSError):
            pass
        raise _Failure(f"HTTP {err.code}{code} from the registry{message} (GET {url})") from None
    except (socket.timeout, TimeoutError):
        clock.left()
        raise _Failure(f"pull did not finish within {clock.timeout_ms} ms") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        if isinstance(reason, ConnectionRefusedError):
            raise _Refused(reason) from None
        raise _Failure(f"cannot reach the registry ({url}): {reason}") from None


def _read(res: BinaryIO, clock: _Deadline, n: int) -> bytes:
    clock.left()
    try:
        return res.read(n)
    except (socket.timeout, TimeoutError):
        raise _Failure(f"pull did not finish within {clock.timeout_ms} ms") from None


def _fetch_manifest(url: str, clock: _Deadline) -> bytes:
    with _open(url, clock, MANIFEST_MEDIA_TYPE) as res:
        declared = int(res.headers.get("content-length") or 0)
        if declared > MAX_MANIFEST_BYTES:
            raise _Failure(f"manifest too large ({declared} bytes > {MAX_MANIFEST_BYTES})")
        chunks: list[bytes] = []
        size = 0
        while chunk := _read(res, clock, _CHUNK):
            size += len(chunk)
            if size > MAX_MANIFEST_BYTES:
                raise _Failure(f"manifest too large (> {MAX_MANIFEST_BYTES} bytes)")
            chunks.append(chunk)
        return b"".join(chunks)


def _parse_manifest(body: bytes, max_bytes: int) -> list[dict[str, Any]]:
    try:
        manifest = json.loads(body)
    except ValueError as err:
        raise _Failure(f"manifest is not JSON: {err}") from None
    if not isinstance(manifest, dict):
        raise _Failure("manifest is not a JSON object")
    config = manifest.get("config")
    media = config.get("mediaType") if isinstance(config, dict) else None
    if media != CONFIG_MEDIA_TYPE:
        raise _Failure(f"not a function package: config media type {json.dumps(media)}, want {CONFIG_MEDIA_TYPE}")
    layers = manifest.get("layers")
    if not isinstance(layers, list):
        raise _Failure("manifest has no layers array")
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict) or layer.get("mediaType") != LAYER_MEDIA_TYPE:
            got = layer.get("mediaType") if isinstance(layer, dict) else None
            raise _Failure(f"layer {i}: media type {json.dumps(got)}, want {LAYER_MEDIA_TYPE}")
        if not isinstance(layer.get("digest"), str) or not _DIGEST.fullmatch(layer["digest"]):
            raise _Failure(f"layer {i}: bad digest {json.dumps(layer.get('digest'))}")
        size = layer.get("size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise _Failure(f"layer {i}: bad size {json.dumps(size)}")
        if size > max_bytes:
            raise _Failure(f"too large: layer {i} is {size} bytes (limit {max_bytes})")
    return layers


def _fetch_blob(url: str, layer: dict[str, Any], spool: str, clock: _Deadline) -> None:
    """Streams a layer blob to ``spool`` (a new file), then checks its size and sha256:
    nothing of it is unpacked before."""
    digest = hashlib.sha256()
    size = 0
    first = b""
    fd = os.open(spool, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    with _open(url, clock) as res, os.fdopen(fd, "wb") as out:
        while chunk := _read(res, clock, _CHUNK):
            size += len(chunk)
            if size > layer["size"]:
                raise _Failure(f"layer {layer['digest']} is longer than the manifest's size {layer['size']}")
            if not first:
                first = chunk[:1]
            digest.update(chunk)
            out.write(chunk)
    if size != layer["size"]:
        raise _Failure(f"layer {layer['digest']} is {size} bytes, the manifest says {layer['size']}")
    actual = "sha256:" + digest.hexdigest()
    if actual != layer["digest"]:
        raise _Failure(f"digest mismatch: layer {layer['digest']} has digest {actual}")
    if first != b"\x1f":
        raise _Failure(f"layer {layer['digest']} is not gzip-compressed")


class _Gunzip:
    """A file-like view of a checked gzip blob, inflated in bounded steps."""

    def __init__(self, src: BinaryIO, layer: dict[str, Any], clock: _Deadline) -> None:
        self.src = src
        self.layer = layer
        self.clock = clock
        self.inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)  # gzip only
        self.pending = bytearray()  # deleting from its front is cheap
        self.eof = False

    def _more(self) -> None:
        data = self.inflate.unconsumed_tail
        if not data:
            self.clock.left()
            chunk = self.src.read(_CHUNK)
            if not chunk:
                self.eof = True
                self.pending += self.inflate.flush()
                return
            data = chunk
        try:
            # Bounded output: a small chunk may inflate to a lot.
            self.pending += self.inflate.decompress(data, 4 * _CHUNK)
        except zlib.error as err:
            raise _Failure(f"layer {self.layer['digest']} is not valid gzip: {err}") from None

    def read(self, n: int = -1) -> bytes:
        while not self.eof and (n < 0 or len(self.pending) < n):
            self._more()
        if n < 0 or n >= len(self.pending):
            out = bytes(self.pending)
            self.pending.clear()
        else:
            out = bytes(self.pending[:n])
            del self.pending[:n]
        return out


class _HeaderTooLarge(_Failure):
    pass


class _TarInfo(tarfile.TarInfo):
    """Refuses pax and GNU long name/link headers past MAX_TAR_HEADER_BYTES (tarfile reads
    them whole into memory), and old GNU sparse members (an unbounded list of extents)."""

    def _proc_gnulong(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        self._check_header()
        return super()._proc_gnulong(tarfile)  # type: ignore[misc]

    def _proc_pax(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        self._check_header()
        return super()._proc_pax(tarfile)  # type: ignore[misc]

    def _proc_sparse(self, tarfile: tarfile.TarFile) -> tarfile.TarInfo:  # type: ignore[override]
        raise _Failure(f"unsafe entry {json.dumps(self.name)}: a GNU sparse entry")

    def _check_header(self) -> None:
        if self.size > MAX_TAR_HEADER_BYTES:
            kind = "pax" if self.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE) else "GNU long name"
            raise _HeaderTooLarge(f"a {kind} header of {self.size} bytes (limit {MAX_TAR_HEADER_BYTES})")


def _extract_layer(spool: str, layer: dict[str, Any], guard: _Guard, clock: _Deadline) -> None:
    """Gunzips and untars a checked layer blob from its spool file."""
    with open(spool, "rb") as src:
        blob = _Gunzip(src, layer, clock)
        try:
            with tarfile.open(fileobj=blob, mode="r|", tarinfo=_TarInfo) as tar:  # type: ignore[call-overload]
                while (member := tar.next()) is not None:
                    # Stream mode keeps every member read in tar.members: drop them as we go.
                    tar.members = []
                    guard.extract(tar, member)
        except tarfile.TarError as err:
            raise _Failure(f"bad layer {layer['digest']}: {err}") from None
        except _HeaderTooLarge as err:
            raise _Failure(f"bad layer {layer['digest']}: {err}") from None


class _Guard:
    """Extracts tar members one by one, refusing any that would leave the root."""

    def __init__(self, root: str, limits: _Limits) -> None:
        self.root = root
        self.max_bytes = limits.max_bytes
        self.max_entries = limits.max_entries
        self.total = 0
        self.entries = 0
        self.symlinks: set[str] = set()

    def extract(self, tar: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        self.entries += 1
        if self.entries > self.max_entries:
            raise _Failure(f"too many entries: the package has more than {self.max_entries} (FAAS_PACKAGE_MAX_ENTRIES)")
        name = json.dumps(m.name)
        if not (m.isreg() or m.isdir() or m.issym() or m.islnk()):
            raise _Failure(f"unsafe entry {name}: a {_kind(m)} entry")
        if m.name.startswith("/") or re.match(r"[A-Za-z]:", m.name):
            raise _Failure(f"unsafe entry {name}: an absolute path")
        if ".." in re.split(r"[/\\]", m.name):
            raise _Failure(f'unsafe entry {name}: a ".." component')
        normal = posixpath.normpath(m.name).rstrip("/")
        if normal in ("", "."):
            return
        parts = normal.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if prefix in self.symlinks:
                raise _Failure(f"unsafe entry {name}: it goes through the symbolic link {prefix}")
        path = os.path.join(self.root, *parts)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if m.isdir():
            if os.path.islink(path) or (os.path.exists(path) and not os.path.isdir(path)):
                os.unlink(path)
            os.makedirs(path, exist_ok=True)
            os.chmod(path, 0o755 | (m.mode & 0o700))
            return
        _remove(path)
        if m.issym():
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(normal), m.linkname))
            if posixpath.isabs(m.linkname) or resolved == ".." or resolved.startswith("../"):
                raise _Failure(f"unsafe entry {name}: a symbolic link to {json.dumps(m.linkname)}, outside the package")
            self.symlinks.add(normal)
            os.symlink(m.linkname, path)
        elif m.islnk():
            if posixpath.isabs(m.linkname) or ".." in m.linkname.split("/"):
                raise _Failure(f"unsafe entry {name}: a hard link to {json.dumps(m.linkname)}, outside the package")
            target_parts = posixpath.normpath(m.linkname).split("/")
            for i in range(1, len(target_parts) + 1):
                if "/".join(target_parts[:i]) in self.symlinks:
                    raise _Failure(
                        f"unsafe entry {name}: a hard link through the symbolic link {json.dumps(m.linkname)}"
                    )
            os.link(os.path.join(self.root, *target_parts), path)
        else:
            self.total += m.size
            if self.total > self.max_bytes:
                raise _Failure(f"too large: the package unpacks to more than {self.max_bytes} bytes")
            src = tar.extractfile(m)
            assert src is not None
            with open(path, "xb") as out:
                shutil.copyfileobj(src, out, _CHUNK)
            os.chmod(path, 0o755 if m.mode & 0o111 else 0o644)


def _remove(path: str) -> None:
    """A later layer's member replaces an earlier one's (never following a link)."""
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def _kind(m: tarfile.TarInfo) -> str:
    if m.ischr():
        return "character device"
    if m.isblk():
        return "block device"
    if m.isfifo():
        return "FIFO"
    return f"type {m.type!r}"


def _check_symlinks(root: str) -> None:
    """Each symbolic link, followed through the links it meets, must stay inside the root."""
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path) and _escapes(root, os.path.relpath(path, root)):
                rel = os.path.relpath(path, root)
                raise _Failure(f'unsafe entry "{rel}": a symbolic link leading outside the package')


def _escapes(root: str, link: str) -> bool:
    stack = link.split(os.sep)[:-1]
    pending = os.readlink(os.path.join(root, link)).split("/")
    hops = 0
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not stack:
                return True
            stack.pop()
            continue
        stack.append(part)
        path = os.path.join(root, *stack)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISLNK(st.st_mode):
            hops += 1
            target = os.readlink(path)
            if hops > 40 or target.startswith("/"):
                return True
            stack.pop()
            pending = target.split("/") + pending
    return False
