"""The command-line contract every layer can extend: a command is a small object
with ``configure`` and ``execute``; a :class:`UsageError` is printed as one line
and ends the command with status 2. Stages declare their commands in the
registry; ``wenzheng.app.cli`` collects them."""

from __future__ import annotations

import argparse
from datetime import datetime


class UsageError(Exception):
    """Bad input or configuration: printed as one line, exit status 2."""


class Command:
    name = ""
    help = ""

    def configure(self, p: argparse.ArgumentParser) -> None:
        """Add this command's options to its subparser."""

    def execute(self, args: argparse.Namespace) -> int:
        raise NotImplementedError


CONFIG_HELP = "configuration directory (default: the packaged 赣州市)"


def add_config_option(p: argparse.ArgumentParser) -> None:
    """``--config`` is taken before or after any (sub)command; SUPPRESS keeps a later
    parser's default from overwriting a value given earlier. A command that makes
    sub-subcommands calls this on each of them."""
    p.add_argument("--config", default=argparse.SUPPRESS, help=CONFIG_HELP)


def parse_time(value: str) -> datetime:
    """A command-line time: an ISO date or date-time, e.g. 2026-03-01 or 2026-03-01T08:00+08:00."""
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {value!r} (e.g. 2026-03-01 or 2026-03-01T08:00+08:00)") from None
