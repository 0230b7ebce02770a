"""The handler-facing API of the faas Python runner.

A function module defines ``handle(req)`` (plain or ``async``) and may import
from here for type hints or a custom response::

    from faas import Request, Response

    def handle(req: Request):
        return Response({"hello": req.query.get("name", "world")}, status=201)

The runner builds the ``Request``; handlers only read it.
"""

from __future__ import annotations

import json as _json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import parse_qs, unquote

__all__ = ["BadRequest", "Headers", "Request", "Response"]


class BadRequest(ValueError):
    """The request is unusable (e.g. a body that is not JSON).

    Left uncaught it becomes ``400 {"error":{"code":"BAD_REQUEST",...}}``
    rather than a 500: the caller sent it, not the handler.
    """


class Headers(Mapping[str, str]):
    """Case-insensitive, read-only header mapping.

    ``headers["Content-Type"]`` gives the value; repeated headers are joined
    with ``", "``. ``get_all(name)`` returns each value separately.
    Iteration yields lower-case names.
    """

    __slots__ = ("_joined", "_pairs")

    def __init__(self, pairs: Iterable[tuple[str, str]] = (), *, lowercase: bool = True) -> None:
        # The runner's parser already lower-cases names and passes lowercase=False.
        self._pairs = [(k.lower(), v) for k, v in pairs] if lowercase else list(pairs)
        joined: dict[str, str] = {}
        for k, v in self._pairs:
            joined[k] = f"{joined[k]}, {v}" if k in joined else v
        self._joined = joined

    def __getitem__(self, name: str) -> str:
        return self._joined[name.lower()]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._joined

    def __iter__(self) -> Iterator[str]:
        return iter(self._joined)

    def __len__(self) -> int:
        return len(self._joined)

    def get_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self._pairs if k == name]

    def __repr__(self) -> str:
        return f"Headers({self._joined!r})"


class Request:
    """One invocation, as the handler sees it.

    ``method``    e.g. ``"POST"``
    ``path``      the part after ``/invoke``, percent-decoded; ``"/"`` by default
    ``raw_path``  the same, still percent-encoded
    ``query``     ``{name: first value}``; ``query_all``: ``{name: [values]}``
    ``headers``   a case-insensitive :class:`Headers`
    ``body``      ``bytes``; ``text``: decoded ``str``; ``json()``: parsed
    ``function``  the function's name
    """

    __slots__ = ("_query_all", "body", "function", "headers", "method", "query_string", "raw_path")

    def __init__(
        self,
        method: str,
        raw_path: str = "/",
        query_string: str = "",
        headers: Headers | None = None,
        body: bytes = b"",
        function: str = "",
    ) -> None:
        self.method = method
        self.raw_path = raw_path
        self.query_string = query_string
        self.headers = headers if headers is not None else Headers()
        self.body = body
        self.function = function
        self._query_all: dict[str, list[str]] | None = None

    @property
    def path(self) -> str:
        return unquote(self.raw_path) if "%" in self.raw_path else self.raw_path

    @property
    def query_all(self) -> dict[str, list[str]]:
        if self._query_all is None:
            self._query_all = parse_qs(self.query_string, keep_blank_values=True)
        return self._query_all

    @property
    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in self.query_all.items()}

    @property
    def text(self) -> str:
        return self.body.decode(self._charset(), errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON; raises :class:`BadRequest` if it is not JSON."""
        if not self.body:
            raise BadRequest("request body is empty, expected JSON")
        try:
            return _json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as err:
            raise BadRequest(f"request body is not valid JSON: {err}") from err

    def _charset(self) -> str:
        ctype = self.headers.get("content-type", "")
        for param in ctype.split(";")[1:]:
            key, _, value = param.strip().partition("=")
            if key.lower() == "charset" and value:
                charset = value.strip('"')
                try:
                    "".encode(charset)
                    return charset
                except LookupError:
                    break
        return "utf-8"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.raw_path}>"


class Response:
    """An explicit response: status, headers and a body.

    ``body`` may be ``str`` (text/plain), ``bytes`` (application/octet-stream),
    a ``dict``/``list`` (application/json) or ``None`` (empty). A
    ``Content-Type`` in ``headers`` overrides the inferred one. ``headers`` is
    a mapping or a list of ``(name, value)`` pairs (for repeated headers such
    as ``Set-Cookie``).
    """

    __slots__ = ("body", "headers", "status")

    def __init__(
        self,
        body: str | bytes | dict[str, Any] | list[Any] | None = None,
        status: int = 200,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> None:
        self.body = body
        self.status = status
        self.headers = headers

    def __repr__(self) -> str:
        return f"<Response {self.status}>"
