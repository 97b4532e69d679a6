"""Why the pusher cannot start; raised while it is set up, shown to the operator."""

from __future__ import annotations


class PushSetupError(Exception):
    """The pusher cannot start (token, CA file, spool); the message says what to fix."""
