"""The one way the builder's charts reach the disk."""
from __future__ import annotations

from pathlib import Path

from models.files import atomic_path


def pyplot():
    """matplotlib.pyplot on the Agg backend: the builder draws files, never windows."""
    import matplotlib  # noqa: PLC0415 - heavy, only when a chart is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def save_png(fig, path: str | Path) -> Path:
    """Write `fig` to `path` as a PNG, atomically (no half-written chart under the final name
    after a crash), and free it: pyplot keeps every open figure alive until it is closed."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
    finally:
        pyplot().close(fig)
    return path
