"""The ``ktmu`` command line."""
from ktmu.cli.app import main

__all__ = ["main"]
