"""Render report blocks as Markdown: report.md with its PNGs written beside it."""

from __future__ import annotations

from pathlib import Path

from mnistlab.atomic import atomic_write_bytes, atomic_write_text
from mnistlab.report.document import Block, Bullets, Code, Heading, Image, Math, Panel, Para, Table

__all__ = ["render_markdown"]


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _table(t: Table) -> list[str]:
    lines = [f"*{t.caption}*", ""] if t.caption else []
    lines.append("| " + " | ".join(_cell(h) for h in t.headers) + " |")
    lines.append("|" + "|".join("---" for _ in t.headers) + "|")
    lines.extend("| " + " | ".join(_cell(c) for c in row) + " |" for row in t.rows)
    return [*lines, ""]


def _image(img: Image, out_dir: Path) -> str:
    atomic_write_bytes(out_dir / img.filename, img.png)
    return f"![{_cell(img.caption)}]({img.filename})"


def render_markdown(blocks: list[Block], out_dir: Path, name: str = "report.md") -> Path:
    """Write `out_dir/report.md` and every image it links to; returns the Markdown path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            lines += [f"<a id=\"{b.anchor}\"></a>", "", "#" * b.level + " " + b.text, ""]
        elif isinstance(b, Para):
            lines += [b.text, ""]
        elif isinstance(b, Bullets):
            lines += [f"- {item}" for item in b.items] + [""]
        elif isinstance(b, Table):
            lines += _table(b)
        elif isinstance(b, Image):
            lines += [_image(b, out_dir), ""]
        elif isinstance(b, Panel):
            lines += [" ".join(_image(img, out_dir) for img in b.images), ""]
            if b.table is not None:
                lines += _table(b.table)
            lines += [f"- {note}" for note in b.notes] + ([""] if b.notes else [])
        elif isinstance(b, Math):
            lines += ["$$", b.latex, "$$", ""]
        elif isinstance(b, Code):
            lines += ([f"*{b.caption}*", ""] if b.caption else []) + ["```toml", b.text.rstrip(),
                                                                       "```", ""]
    path = out_dir / name
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    return path
