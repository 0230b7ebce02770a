"""Tells the gateways that this pod is ready (docs/runner-protocol.md, "Announcing a pod").

A Kubernetes function pod's address reaches the API server only at the
kubelet's next status sync, up to a second after the runner listens. With
FAAS_ANNOUNCE_URL set, the runner POSTs ``{namespace, pod, uid, ip, port,
uptimeMs}`` there once it is ready; a gateway checks the pod against its own
watch (name and UID), probes ``/readyz`` on that address and routes to it at
once. Best effort: a few attempts, short deadlines, never fatal.
"""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlsplit

from . import log
from .config import Config

ATTEMPTS = 3
TIMEOUT_S = 1.0
RETRY_S = (0.1, 0.4)


def announcement(config: Config, port: int, started: float) -> dict[str, object] | None:
    """The body to send, or None when this runner has nothing (or nowhere) to announce."""
    if not (config.announce_url and config.pod_name and config.pod_uid and config.pod_ip and config.pod_namespace):
        return None
    return {
        "namespace": config.pod_namespace,
        "pod": config.pod_name,
        "uid": config.pod_uid,
        "ip": config.pod_ip,
        "port": port,
        "uptimeMs": round((time.monotonic() - started) * 1000, 1),
    }


async def announce(url: str, body: dict[str, object]) -> bool:
    """POSTs ``body`` to ``url``; True once a gateway accepted it (2xx)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or 80
    path = parts.path or "/"
    payload = json.dumps(body, separators=(",", ":")).encode()
    request = (
        f"POST {path} HTTP/1.1\r\nhost: {parts.netloc}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n"
    ).encode() + payload
    for attempt in range(ATTEMPTS):
        try:
            status = await asyncio.wait_for(_post(host, port, request), TIMEOUT_S)
            if 200 <= status < 300:
                log.info("announced", url=url, attempt=attempt + 1)
                return True
            log.warn("announce_refused", url=url, status=status)
            if 400 <= status < 500:
                return False  # the gateway will not take it; asking again changes nothing
        except (OSError, asyncio.TimeoutError, ValueError) as err:
            log.warn("announce_failed", url=url, attempt=attempt + 1, error=str(err) or type(err).__name__)
        if attempt < len(RETRY_S):
            await asyncio.sleep(RETRY_S[attempt])
    return False


async def _post(host: str, port: int, request: bytes) -> int:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        line = await reader.readline()
        fields = line.split(b" ", 2)
        if len(fields) < 2 or not fields[0].startswith(b"HTTP/1."):
            raise ValueError(f"not an HTTP response: {line[:60]!r}")
        return int(fields[1])
    finally:
        writer.close()
