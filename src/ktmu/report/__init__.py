"""What a person reads: result tables, zero-shot tables, world listings, and the HTML report of run folders.

``ktmu.report.write_report(run_dir)`` writes ``run_dir/report.html`` (see :mod:`ktmu.report.page`);
the report's modules (and matplotlib) are imported only when it is called.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any


def write_report(run_dirs: Any, out: str | Path | None = None, **options: Any) -> Path:
    """Write the HTML report of one or more run folders (see :func:`ktmu.report.page.write_report`)."""
    from ktmu.report.page import write_report as write

    return write(run_dirs, out, **options)


__all__ = ["write_report"]
