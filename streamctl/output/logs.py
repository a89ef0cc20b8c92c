"""Per-stream logging to the console (rich) and a 0600 log file, with stream keys masked everywhere."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from streamctl.masking import mask_text
from streamctl.store.fileio import ensure_private_dir


class SecretFilter(logging.Filter):
    """Replaces every known secret in a record's final message, whatever handler prints it."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = mask_text(record.getMessage(), self.secrets), None
        return True


def stream_logger(name: str, log_file: Path, secrets: list[str], console: Any = True) -> logging.Logger:
    """CONSOLE: True for a new stderr console, False for none, or a rich Console to share (progress bar)."""
    log = logging.getLogger(f"streamctl.stream.{name}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
    for f in list(log.filters):
        log.removeFilter(f)
    log.addFilter(SecretFilter(secrets))

    ensure_private_dir(log_file.parent)
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.close(fd)
    fh = logging.FileHandler(log_file, encoding="utf-8")
    fh.setLevel(logging.DEBUG)
    fh.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s"))
    log.addHandler(fh)
    if console is True and not sys.stderr.isatty():
        # A file or the journal: one plain line a record. Rich would wrap at 80 columns and pad with spaces.
        plain = logging.StreamHandler(sys.stderr)
        plain.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        plain.setLevel(logging.INFO)
        log.addHandler(plain)
    elif console is not False:
        from rich.console import Console
        from rich.logging import RichHandler

        con = Console(stderr=True) if console is True else console
        ch = RichHandler(console=con, show_path=False, markup=False, rich_tracebacks=False)
        ch.setLevel(logging.INFO)
        log.addHandler(ch)
    return log


def close_logger(log: logging.Logger) -> None:
    for h in list(log.handlers):
        log.removeHandler(h)
        h.close()
