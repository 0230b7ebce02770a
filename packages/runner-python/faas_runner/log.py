"""JSON-lines logging: info to stdout, warnings and errors to stderr."""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def log(level: str, event: str, **fields: Any) -> None:
    record = {"ts": round(time.time(), 3), "level": level, "event": event, "runtime": "python", **fields}
    stream = sys.stdout if level == "info" else sys.stderr
    stream.write(json.dumps(record, default=str, separators=(",", ":")) + "\n")
    stream.flush()


def info(event: str, **fields: Any) -> None:
    log("info", event, **fields)


def warn(event: str, **fields: Any) -> None:
    log("warn", event, **fields)


def error(event: str, **fields: Any) -> None:
    log("error", event, **fields)
