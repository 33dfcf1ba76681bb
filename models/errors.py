"""The one base class for errors a user can act on.

Every error raised for the user (a bad note, a runtime that cannot start, a bad config, a failed
export, ...) derives from `CoderError`, so the app and the builder's CLI can catch them all in one
place and show the message alone, without a traceback. Subclasses that were ValueError or
RuntimeError before keep that base too, so existing `except ValueError` code still catches them.
`Cancelled` is not an error and does not derive from it.
"""
from __future__ import annotations


class CoderError(Exception):
    """An error the user can act on: the message says what to do."""
