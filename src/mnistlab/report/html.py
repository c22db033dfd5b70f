"""Render report blocks as one self-contained HTML file: images and equations embedded as
base64 PNG (equations drawn offline by matplotlib's mathtext), no scripts, no network, a print
stylesheet."""

from __future__ import annotations

import base64
import html
import io

from mnistlab.report.document import Block, Bullets, Code, Heading, Image, Math, Panel, Para, Table

__all__ = ["render_html", "render_fragment", "math_png"]

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;max-width:1150px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #333}h2{border-bottom:1px solid #aaa;margin-top:2em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #bbb;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#eee}caption{font-style:italic;text-align:left;padding:.2em 0}
figure{margin:.3em;display:inline-block;vertical-align:top}
figure img{max-width:100%}figcaption{font-size:.85em;color:#555}
.panel{display:flex;flex-wrap:wrap;gap:.8em;align-items:flex-start;margin:.5em 0 1.5em}
.panel figure{flex:1 1 340px;max-width:480px}.panel .side{flex:1 1 300px}
.math{margin:.6em 0 .6em 1.5em}pre{background:#f6f6f6;padding:.6em;overflow-x:auto;font-size:.8em}
nav ul{columns:2}
@media print{body{max-width:none;margin:0}h2{page-break-before:always}
.panel{page-break-inside:avoid}pre{white-space:pre-wrap}}
"""


def math_png(latex: str) -> bytes:
    """LaTeX (matplotlib mathtext subset) -> PNG bytes, rendered without any network."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib import mathtext
    from matplotlib.font_manager import FontProperties

    buf = io.BytesIO()
    mathtext.math_to_image(f"${latex}$", buf, prop=FontProperties(size=13), dpi=120,
                           format="png")
    return buf.getvalue()


def _src(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _e(text: str) -> str:
    return html.escape(str(text))


def _table(t: Table) -> str:
    cap = f"<caption>{_e(t.caption)}</caption>" if t.caption else ""
    head = "".join(f"<th>{_e(h)}</th>" for h in t.headers)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>"
                   for row in t.rows)
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _figure(img: Image) -> str:
    return (f'<figure><img src="{_src(img.png)}" alt="{_e(img.caption)}">'
            f"<figcaption>{_e(img.caption)}</figcaption></figure>")


def _block(b: Block) -> str:
    if isinstance(b, Heading):
        return f'<h{b.level} id="{b.anchor}">{_e(b.text)}</h{b.level}>'
    if isinstance(b, Para):
        return f"<p>{_e(b.text)}</p>"
    if isinstance(b, Bullets):
        return "<ul>" + "".join(f"<li>{_e(i)}</li>" for i in b.items) + "</ul>"
    if isinstance(b, Table):
        return _table(b)
    if isinstance(b, Image):
        return _figure(b)
    if isinstance(b, Panel):
        side = (_table(b.table) if b.table is not None else "") + (
            "<ul>" + "".join(f"<li>{_e(n)}</li>" for n in b.notes) + "</ul>" if b.notes else "")
        return ('<div class="panel">' + "".join(_figure(i) for i in b.images)
                + f'<div class="side">{side}</div></div>')
    if isinstance(b, Math):
        return (f'<div class="math"><img src="{_src(math_png(b.latex))}" '
                f'alt="{_e(b.latex)}" title="{_e(b.latex)}"></div>')
    if isinstance(b, Code):
        cap = f"<p><em>{_e(b.caption)}</em></p>" if b.caption else ""
        return f"{cap}<pre>{_e(b.text)}</pre>"
    raise TypeError(f"unknown report block {type(b).__name__}")


def render_fragment(blocks: list[Block]) -> str:
    """Blocks as HTML to sit inside someone else's page (a notebook's output): no document, no
    style sheet, so the page's own styles are left alone."""
    return "\n".join(_block(b) for b in blocks)


def render_html(blocks: list[Block], title: str) -> str:
    """The whole report as one HTML document (a table of contents from the level-2 headings)."""
    toc = "".join(f'<li><a href="#{b.anchor}">{_e(b.text)}</a></li>'
                  for b in blocks if isinstance(b, Heading) and b.level == 2)
    body = []
    for b in blocks:
        body.append(_block(b))
        if isinstance(b, Heading) and b.level == 1 and toc:
            body.append(f"<nav><strong>Contents</strong><ul>{toc}</ul></nav>")
            toc = ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{_e(title)}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
