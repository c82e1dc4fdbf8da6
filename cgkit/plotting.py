"""Matplotlib set-up shared by every figure cgkit writes (headless: the Agg backend)."""
from __future__ import annotations

from pathlib import Path

__all__ = ["pyplot", "savefig"]


def pyplot():
    """``matplotlib.pyplot`` on the non-interactive Agg backend (imported on first use)."""
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    return plt


def savefig(fig, path, dpi: int = 110) -> Path:
    """Lay out, write ``fig`` to ``path`` (PNG/PDF/SVG by suffix) and close it; returns the path."""
    path = Path(path)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path
