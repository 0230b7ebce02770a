"""HTTP/1.1 message framing over asyncio streams (RFC 9112), server side.

Owns: parsing the request head, reading Content-Length and chunked bodies
(with ``Expect: 100-continue``), keep-alive rules, and serializing responses.
Anything the parser rejects raises ``ProtocolError``; the caller answers with
its status and closes the connection, since framing can no longer be trusted.
"""

from __future__ import annotations

import asyncio
import json
import re
from http import HTTPStatus

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"[\x21-\x7e]+")
_FIELD_VALUE_BAD = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,15}")
_MAX_CHUNK_LINE = 4096
_MAX_TRAILER_BYTES = 16 * 1024

_REASONS = {s.value: s.phrase for s in HTTPStatus}


class ProtocolError(Exception):
    """A request the server cannot frame or will not accept; always closes."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class RequestHead:
    __slots__ = (
        "body_length",
        "body_read",
        "chunked",
        "expect_continue",
        "headers",
        "keep_alive",
        "method",
        "target",
        "version",
    )

    def __init__(self) -> None:
        self.method = ""
        self.target = ""
        self.version = 1  # minor version: HTTP/1.0 or HTTP/1.1
        self.headers: list[tuple[str, str]] = []
        self.keep_alive = True
        self.body_length = 0  # Content-Length; -1 when chunked
        self.chunked = False
        self.expect_continue = False
        self.body_read = False

    @property
    def has_body(self) -> bool:
        return self.chunked or self.body_length > 0


async def read_head(reader: asyncio.StreamReader, max_headers: int) -> RequestHead | None:
    """Reads one request head; ``None`` on a clean EOF between requests.

    The reader's ``limit`` bounds the head size (→ 431).
    """
    for _ in range(4):  # RFC 9112 §2.2: ignore a few empty lines before a request
        try:
            data = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise ProtocolError(431, "BAD_REQUEST", "request header section too large") from None
        except asyncio.IncompleteReadError as err:
            if err.partial.strip():
                raise ConnectionResetError("client closed mid-request") from None
            return None
        data = data.lstrip(b"\r\n")
        if data:
            return parse_head(data, max_headers)
    raise ProtocolError(400, "BAD_REQUEST", "empty request")


def parse_head(data: bytes, max_headers: int) -> RequestHead:
    lines = data[:-4].split(b"\r\n")
    head = RequestHead()
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise ProtocolError(400, "BAD_REQUEST", "malformed request line")
    method, target, version = parts
    if not _TOKEN.fullmatch(method):
        raise ProtocolError(400, "BAD_REQUEST", "malformed request method")
    if not _TARGET.fullmatch(target):
        raise ProtocolError(400, "BAD_REQUEST", "malformed request target")
    if version == b"HTTP/1.1":
        head.version = 1
    elif version == b"HTTP/1.0":
        head.version = 0
        head.keep_alive = False
    elif re.fullmatch(rb"HTTP/\d\.\d", version):
        raise ProtocolError(505, "BAD_REQUEST", "only HTTP/1.0 and HTTP/1.1 are supported")
    else:
        raise ProtocolError(400, "BAD_REQUEST", "malformed HTTP version")
    head.method = method.decode("ascii")
    head.target = target.decode("ascii")

    if len(lines) - 1 > max_headers:
        raise ProtocolError(431, "BAD_REQUEST", f"more than {max_headers} request headers")
    headers = head.headers
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name):
            # Also rejects obs-fold (a line starting with whitespace) and "name :".
            raise ProtocolError(400, "BAD_REQUEST", "malformed header line")
        value = value.strip(b" \t")
        if _FIELD_VALUE_BAD.search(value):
            raise ProtocolError(400, "BAD_REQUEST", "invalid character in header value")
        headers.append((name.decode("ascii").lower(), value.decode("latin-1")))
    _apply_framing(head)
    return head


def _apply_framing(head: RequestHead) -> None:
    hosts = 0
    lengths: set[str] = set()
    codings: list[str] = []
    for name, value in head.headers:
        if name == "host":
            hosts += 1
        elif name == "content-length":
            lengths.update(v.strip() for v in value.split(","))
        elif name == "transfer-encoding":
            codings.extend(c.strip().lower() for c in value.split(",") if c.strip())
        elif name == "connection":
            tokens = {t.strip().lower() for t in value.split(",")}
            if "close" in tokens:
                head.keep_alive = False
            elif "keep-alive" in tokens and head.version == 0:
                head.keep_alive = True
        elif name == "expect":
            if value.lower() != "100-continue":
                raise ProtocolError(417, "BAD_REQUEST", f"unsupported Expect: {value}")
            head.expect_continue = head.version == 1
    if head.version == 1 and hosts != 1:
        raise ProtocolError(400, "BAD_REQUEST", "HTTP/1.1 requests need exactly one Host header")
    if codings:
        # A request with both could be smuggled past a proxy that reads the other one.
        if lengths:
            raise ProtocolError(400, "BAD_REQUEST", "both Transfer-Encoding and Content-Length")
        if head.version == 0 or codings[-1] != "chunked":
            raise ProtocolError(400, "BAD_REQUEST", "request body must be chunked-encoded last")
        if codings != ["chunked"]:
            raise ProtocolError(501, "BAD_REQUEST", f"unsupported transfer coding: {', '.join(codings)}")
        head.chunked = True
        head.body_length = -1
    elif lengths:
        if len(lengths) != 1:
            raise ProtocolError(400, "BAD_REQUEST", "conflicting Content-Length values")
        (raw,) = lengths
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 15:
            raise ProtocolError(400, "BAD_REQUEST", "invalid Content-Length")
        head.body_length = int(raw)


async def read_body(
    head: RequestHead, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_bytes: int
) -> bytes:
    """Reads the whole request body, sending ``100 Continue`` if asked for."""
    if not head.has_body:
        return b""
    if head.body_length > max_bytes:
        raise ProtocolError(413, "BODY_TOO_LARGE", f"request body larger than {max_bytes} bytes")
    if head.expect_continue:
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    if not head.chunked:
        return await reader.readexactly(head.body_length)
    return await _read_chunked(reader, max_bytes)


async def _read_chunked(reader: asyncio.StreamReader, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        line = await _read_line(reader, _MAX_CHUNK_LINE)
        size_field = line.split(b";", 1)[0].strip(b" \t")
        if not _HEX.fullmatch(size_field):
            raise ProtocolError(400, "BAD_REQUEST", "malformed chunk size")
        size = int(size_field, 16)
        if size == 0:
            break
        total += size
        if total > max_bytes:
            raise ProtocolError(413, "BODY_TOO_LARGE", f"request body larger than {max_bytes} bytes")
        chunk = await reader.readexactly(size + 2)
        if chunk[-2:] != b"\r\n":
            raise ProtocolError(400, "BAD_REQUEST", "chunk data not followed by CRLF")
        chunks.append(chunk[:-2])
    trailer_bytes = 0
    while True:  # trailer fields are read and dropped
        line = await _read_line(reader, _MAX_TRAILER_BYTES)
        if not line:
            break
        trailer_bytes += len(line)
        if trailer_bytes > _MAX_TRAILER_BYTES:
            raise ProtocolError(431, "BAD_REQUEST", "chunked trailer section too large")
    return b"".join(chunks)


async def _read_line(reader: asyncio.StreamReader, max_len: int) -> bytes:
    try:
        line = await reader.readuntil(b"\r\n")
    except asyncio.LimitOverrunError:
        raise ProtocolError(400, "BAD_REQUEST", "line too long in chunked body") from None
    if len(line) > max_len:
        raise ProtocolError(400, "BAD_REQUEST", "line too long in chunked body")
    return line[:-2]


def status_line(status: int) -> bytes:
    return f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n".encode("ascii")


_STATUS_LINES = {s: status_line(s) for s in _REASONS}


def serialize(
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
    *,
    keep_alive: bool,
    version: int,
    head_request: bool,
) -> bytes:
    """The response bytes; framing headers (length, connection) are ours alone."""
    out = [_STATUS_LINES.get(status) or status_line(status)]
    for name, value in headers:
        out.append(f"{name}: {value}\r\n".encode("latin-1"))
    if status == 204 or status == 304 or status < 200:
        body = b""  # these never carry content (RFC 9110 §6.4.1)
    else:
        out.append(b"content-length: %d\r\n" % len(body))
    if not keep_alive:
        out.append(b"connection: close\r\n")
    elif version == 0:
        out.append(b"connection: keep-alive\r\n")
    out.append(b"\r\n")
    if body and not head_request:
        out.append(body)
    return b"".join(out)


def error_body(code: str, message: str, **extra: object) -> bytes:
    return json.dumps({"error": {"code": code, "message": message, **extra}}, separators=(",", ":")).encode()


JSON_HEADERS = [("content-type", "application/json")]
