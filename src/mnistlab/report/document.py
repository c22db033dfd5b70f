"""The report as a list of plain blocks, so HTML and Markdown render the same content.

Images are PNG bytes with a file name: Markdown writes them beside report.md, HTML embeds them as
base64. Equations are LaTeX in matplotlib's mathtext subset: Markdown keeps `$$...$$`, HTML shows
them as embedded PNGs rendered offline by matplotlib.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field

__all__ = ["Heading", "Para", "Bullets", "Table", "Image", "Panel", "Math", "Code", "Block",
           "slug", "figure_png"]


@dataclass(frozen=True)
class Heading:
    level: int  # 1 = title, 2 = section, 3 = subsection
    text: str

    @property
    def anchor(self) -> str:
        return slug(self.text)


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""


@dataclass(frozen=True)
class Image:
    filename: str  # unique within the report, e.g. "raw-final-loss.png"
    png: bytes
    caption: str


@dataclass(frozen=True)
class Panel:
    """Figures side by side with a table and notes beside them (one configuration)."""

    images: tuple[Image, ...]
    table: Table | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Math:
    latex: str  # mathtext-compatible LaTeX, without the surrounding $


@dataclass(frozen=True)
class Code:
    text: str
    caption: str = ""


Block = Heading | Para | Bullets | Table | Image | Panel | Math | Code


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:80] or "x"


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes (`plots` makes bare Figures: nothing to close)."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=90)
    return buf.getvalue()
