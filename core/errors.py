"""Errors that say whether trying again can help.

A *transient* error (broker unreachable, upstream rate-limited) is retried with
back-off; a *terminal* one (malformed input) sends the message to the
dead-letter topic with its reason, so it never blocks the messages behind it.
"""

from __future__ import annotations


class WenzhengError(Exception):
    transient = False


class TransientError(WenzhengError):
    transient = True


class BadMessage(WenzhengError):
    """Input that can never be processed: dead-lettered with this reason."""

    def __init__(self, reason: str, *, source: str = ""):
        self.reason, self.source = reason, source
        super().__init__(f"{source}: {reason}" if source else reason)
