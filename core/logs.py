"""Structured logging: one JSON object per line, UTF-8, Chinese kept as is."""

from __future__ import annotations

import json
import logging
import sys
import time
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import TextIO

_RESERVED = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(record.created))
            + f".{int(record.msecs):03d}",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        line.update({k: v for k, v in record.__dict__.items() if k not in _RESERVED})
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


MAX_BYTES = 20 * 1024 * 1024
BACKUPS = 5
"""A log file rotates at MAX_BYTES and keeps BACKUPS old ones: a worker never fills a disk."""


def setup(level: str = "INFO", stream: TextIO | None = None, file: Path | None = None,
          max_bytes: int = MAX_BYTES) -> None:
    """JSON lines to ``file`` (rotated) or to ``stream`` (stderr: systemd or Kubernetes keep it)."""
    handler: logging.Handler
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handler = RotatingFileHandler(file, maxBytes=max_bytes, backupCount=BACKUPS, encoding="utf-8")
    else:
        stream = stream or sys.stderr
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8", errors="backslashreplace")
        handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    for old in root.handlers:
        if isinstance(old, logging.FileHandler):  # a file of an earlier setup
            old.close()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("kafka", "apscheduler", "jieba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # kafka-python's event-loop timing warnings say nothing an operator can act on
    logging.getLogger("kafka.net.selector").setLevel(logging.ERROR)
