"""Runner configuration, read from the environment once at start."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass

from .package import DEFAULT_MAX_BYTES, DEFAULT_MAX_ENTRIES, DEFAULT_PULL_TIMEOUT_MS


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Config:
    # Address and port to bind; port 0 picks a free one (printed on start).
    host: str = "0.0.0.0"
    port: int = 8080
    # A directory holding function.json (a ConfigMap mount); loaded at start.
    code_dir: str | None = None
    # FAAS_FUNCTION_SPEC / FAAS_FUNCTION_CODE: the same function.json (and its code
    # file) as environment variables, which a pod gets without a volume; loaded at start.
    function_spec: str | None = None
    function_code: str | None = None
    # FAAS_ANNOUNCE_URL: once ready, POST this pod's address there (the gateways'
    # announce port), so a cold start need not wait for the API server to learn it.
    announce_url: str | None = None
    # This pod, from the downward API (FAAS_POD_NAMESPACE, _NAME, _UID, _IP).
    pod_namespace: str | None = None
    pod_name: str | None = None
    pod_uid: str | None = None
    pod_ip: str | None = None
    # Idle keep-alive connections close after this; must exceed the gateway
    # pool's idle timeout or it reuses sockets we are closing.
    keepalive_seconds: float = 75.0
    # Threads that run sync handlers: above any sensible per-replica concurrency.
    threads: int = 64
    # Request header section (request line included) and body limits.
    max_header_bytes: int = 64 * 1024
    max_headers: int = 100
    max_body_bytes: int = 64 * 1024 * 1024
    # Pending connections the kernel queues; a thundering herd must not see resets.
    backlog: int = 4096
    # Local mode: the supervising process; the runner exits when it is gone.
    parent_pid: int | None = None
    # A module that has not finished importing by then fails the specialization
    # (400 FUNCTION_LOAD_FAILED with loadTimeoutMs) and the runner exits 3.
    load_timeout_ms: int = 10_000
    # When set, POST /specialize needs ``Authorization: Bearer <token>`` (pool pods).
    specialize_token: str | None = None
    # Pool mode: a file on a volume that outlives the container (an emptyDir),
    # written on specialization. A runner that starts and finds it was claimed
    # before and restarted: it stays unready and refuses to specialize again.
    pool_claim_file: str | None = None
    # FAAS_PACKAGE_CACHE_DIR: pulled packages are unpacked to <package_cache_dir>/<hex>
    # (default $TMPDIR/faas-packages).
    package_cache_dir: str | None = None
    # FAAS_PACKAGE_MAX_BYTES: the most a pulled package may unpack to.
    package_max_bytes: int = DEFAULT_MAX_BYTES
    # FAAS_PACKAGE_MAX_ENTRIES: the most tar entries a pulled package may have.
    package_max_entries: int = DEFAULT_MAX_ENTRIES
    # FAAS_PACKAGE_PULL_TIMEOUT_MS: the deadline of a package pull (not part of the load timeout).
    package_pull_timeout_ms: int = DEFAULT_PULL_TIMEOUT_MS

    @property
    def preloaded(self) -> bool:
        """Started with its function's code (a code directory or the environment): never specializes."""
        return bool(self.code_dir or self.function_spec)


def load_config(env: Mapping[str, str]) -> Config:
    code_dir = env.get("FAAS_CODE_DIR") or None
    return Config(
        host=env.get("FAAS_HOST") or Config.host,
        port=_int(env, "FAAS_PORT", Config.port, 0, 65535),
        code_dir=code_dir,
        function_spec=env.get("FAAS_FUNCTION_SPEC") or None,
        function_code=env.get("FAAS_FUNCTION_CODE") or None,
        announce_url=env.get("FAAS_ANNOUNCE_URL") or None,
        pod_namespace=env.get("FAAS_POD_NAMESPACE") or None,
        pod_name=env.get("FAAS_POD_NAME") or None,
        pod_uid=env.get("FAAS_POD_UID") or None,
        pod_ip=env.get("FAAS_POD_IP") or None,
        keepalive_seconds=_float(env, "FAAS_KEEPALIVE_SECONDS", Config.keepalive_seconds),
        threads=_int(env, "FAAS_THREADS", Config.threads, 1, 4096),
        max_body_bytes=_int(env, "FAAS_MAX_BODY_BYTES", Config.max_body_bytes, 0, 2**40),
        parent_pid=_int(env, "FAAS_PARENT_PID", 0, 0, 2**31) or None,
        load_timeout_ms=_int(env, "FAAS_LOAD_TIMEOUT_MS", Config.load_timeout_ms, 1, 2**31),
        specialize_token=env.get("FAAS_SPECIALIZE_TOKEN") or None,
        pool_claim_file=env.get("FAAS_POOL_CLAIM_FILE") or None,
        package_cache_dir=os.path.abspath(
            env.get("FAAS_PACKAGE_CACHE_DIR") or os.path.join(tempfile.gettempdir(), "faas-packages")
        ),
        package_max_bytes=_int(env, "FAAS_PACKAGE_MAX_BYTES", Config.package_max_bytes, 1, 2**50),
        package_max_entries=_int(env, "FAAS_PACKAGE_MAX_ENTRIES", Config.package_max_entries, 1, 2**40),
        package_pull_timeout_ms=_int(env, "FAAS_PACKAGE_PULL_TIMEOUT_MS", Config.package_pull_timeout_ms, 1, 2**31),
    )


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ConfigError(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not value > 0:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value
