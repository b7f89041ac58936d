"""The one base class of every error a user can cause; the command line turns it into one ``ktmu: error:`` line.

Anything that is not a :class:`KtmuError` is a bug in ktmu (or a library under it) and keeps its
traceback. Each subclass also keeps the built-in base it had before (``ValueError``, ``KeyError``),
so code written against those still catches it.
"""
from __future__ import annotations


class KtmuError(Exception):
    """A mistake in what the user asked for (a name, a setting, a file, a request); the message says what to do instead."""


class UsageError(KtmuError, ValueError):
    """A command-line option or argument combination that cannot work; the message names the option and what to write."""
