"""Blocks (headings, text, tables, images) rendered twice: a self-contained HTML page and Markdown, each
opening with a table of contents of its section headings."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field

UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass
class Page:
    title: str
    blocks: list[tuple] = field(default_factory=list)
    images: dict[str, bytes] = field(default_factory=dict)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("h", level, text))

    def text(self, text: str) -> None:
        self.blocks.append(("p", text))

    def table(self, header: list[str], rows: list[list]) -> None:
        self.blocks.append(("table", header, [[_cell(v) for v in row] for row in rows]))

    def markdown_table(self, text: str) -> None:
        """A pipe table written by another artifact (e.g. a probe's results.md)."""
        lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip().startswith("|")]
        if len(lines) >= 2:
            split = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
            self.blocks.append(("table", split[0], split[2:]))

    def markdown(self, text: str, *, shift: int = 0) -> None:
        """A Markdown section written by a tool (e.g. `just ablate`'s ablation.md): headings (moved `shift`
        levels down), pipe tables and paragraphs; list items and other lines are kept as paragraphs of text."""
        lines, i = text.splitlines(), 0
        while i < len(lines):
            line = lines[i].strip()
            if line.startswith("#"):
                hashes = len(line) - len(line.lstrip("#"))
                self.heading(line[hashes:].strip(), min(6, hashes + shift))
            elif line.startswith("|"):
                start = i
                while i + 1 < len(lines) and lines[i + 1].strip().startswith("|"):
                    i += 1
                self.markdown_table("\n".join(lines[start : i + 1]))
            elif line:
                start = i
                while i + 1 < len(lines) and lines[i + 1].strip() and not lines[i + 1].strip().startswith(("#", "|", "- ")):
                    i += 1
                self.text(" ".join(ln.strip() for ln in lines[start : i + 1]))
            i += 1

    def image(self, name: str, png: bytes, caption: str, width_mm: float | None = None) -> str:
        """Add a figure; its file name is made safe (record ids like `data/1` hold slashes) and unique.
        `width_mm` shows it at that physical width (ECG paper at real size). Returns the file name used."""
        stem, dot, ext = UNSAFE_NAME.sub("_", name).strip("._").rpartition(".")
        stem, ext = (stem, ext) if dot else (ext, "png")
        safe, n = f"{stem or 'figure'}.{ext}", 1
        while safe in self.images:
            n += 1
            safe = f"{stem}-{n}.{ext}"
        self.images[safe] = png
        self.blocks.append(("img", safe, caption, width_mm))
        return safe

    def contents(self) -> list[tuple[int, str, str]]:
        """(level, text, anchor) of every heading, anchors unique within the page."""
        seen: dict[str, int] = {}
        out = []
        for block in self.blocks:
            if block[0] == "h":
                slug = UNSAFE_NAME.sub("-", block[2].lower()).strip("-") or "section"
                seen[slug] = seen.get(slug, 0) + 1
                out.append((block[1], block[2], slug if seen[slug] == 1 else f"{slug}-{seen[slug]}"))
        return out


def _cell(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;
color:#222;line-height:1.45}h1{border-bottom:2px solid #4472c4}h2{margin-top:2em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}th,td{border:1px solid #ccc;padding:0.3em 0.6em;
text-align:left;vertical-align:top}th{background:#f0f4fa}figure{margin:1em 0}img{max-width:100%}
figcaption{font-size:0.85em;color:#555}code{background:#f5f5f5;padding:0 0.2em}
nav.toc{background:#f7f9fc;border:1px solid #dde3ee;padding:0.5em 1.2em;margin:1em 0}nav.toc ul{margin:0.2em 0;
padding-left:1.2em}nav.toc li.h3{font-size:0.9em}figure.paper img{max-width:none}figure.paper{overflow-x:auto}
"""


def to_html(page: Page) -> str:
    out = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
           f"<title>{html.escape(page.title)}</title>", f"<style>{CSS}</style>", "</head>", "<body>",
           f"<h1>{html.escape(page.title)}</h1>"]
    contents = iter(page.contents())
    out.append(_toc_html(page))
    for block in page.blocks:
        if block[0] == "h":
            anchor = next(contents)[2]
            out.append(f'<h{block[1]} id="{anchor}">{html.escape(block[2])}</h{block[1]}>')
        elif block[0] == "p":
            out.append(f"<p>{html.escape(block[1])}</p>")
        elif block[0] == "table":
            out.append("<table><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in block[1]) + "</tr></thead><tbody>")
            out += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in block[2]]
            out.append("</tbody></table>")
        elif block[0] == "img":
            data = base64.b64encode(page.images[block[1]]).decode("ascii")
            width = block[3]
            attrs = ' class="paper"' if width else ""
            style = f' style="width:{width:.1f}mm"' if width else ""
            out.append(f'<figure{attrs}><img src="data:image/png;base64,{data}" alt="{html.escape(block[2])}"{style}>'
                       f"<figcaption>{html.escape(block[2])}</figcaption></figure>")
    out += ["</body>", "</html>"]
    return "\n".join(out) + "\n"


def _toc_html(page: Page) -> str:
    items = [f'<li class="h{level}"><a href="#{anchor}">{html.escape(text)}</a></li>'
             for level, text, anchor in page.contents() if level <= 3]
    return '<nav class="toc"><strong>Contents</strong><ul>' + "".join(items) + "</ul></nav>"


def to_markdown(page: Page) -> str:
    out = [f"# {page.title}", "", "Contents:", ""]
    out += [f"{'  ' * (level - 2)}- [{text}](#{anchor})" for level, text, anchor in page.contents() if level <= 3]
    out.append("")
    for block in page.blocks:
        if block[0] == "h":
            out += ["#" * block[1] + " " + block[2], ""]
        elif block[0] == "p":
            out += [block[1], ""]
        elif block[0] == "table":
            out.append("| " + " | ".join(block[1]) + " |")
            out.append("|" + "---|" * len(block[1]))
            out += ["| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in row) + " |" for row in block[2]]
            out.append("")
        elif block[0] == "img":
            out += [f"![{block[2]}]({block[1]})", ""]
    return "\n".join(out)
