"""What every command prints and writes, on the main process only (under ``accelerate launch`` every process runs the command)."""
from __future__ import annotations

from pathlib import Path
from typing import Any


def is_main() -> bool:
    """Whether this is the process that prints and writes (the only one outside ``accelerate launch``)."""
    from ktmu.runtime.dist import get_dist

    return get_dist().is_main


def say(*args: Any, **kw: Any) -> None:
    """print() on the main process only."""
    if is_main():
        print(*args, **kw)


def dump(obj: Any, path: str | Path) -> None:
    """Write ``obj`` as strict JSON to ``path`` atomically, on the main process only."""
    from ktmu.outputs import write_json_atomic

    if is_main():
        write_json_atomic(path, obj)


def quiet_libraries() -> None:
    """Silence third-party load reports that would bury our tables."""
    import warnings

    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass
