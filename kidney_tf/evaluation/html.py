"""A tiny report document rendered to self-contained HTML (base64 images) and to Markdown.

Reports are built once as a list of blocks (headings, paragraphs, tables, figures, warnings,
preformatted text) and rendered twice, so ``report.html`` and ``report.md`` never disagree.

Usage::

    doc = Document("Evaluation report")
    doc.heading("Summary")
    doc.table(["metric", "value"], [["accuracy", 0.91]])
    doc.figure("confusion_matrix.png", "Confusion matrix")
    doc.write(out_dir / "report.html", out_dir / "report.md", base_dir=out_dir)
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kidney_tf.utils.io import write_text_atomic

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{border-bottom:2px solid #444;padding-bottom:.2em}h2{border-bottom:1px solid #ccc;margin-top:1.8em}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em}
th,td{border:1px solid #bbb;padding:.25em .6em;text-align:right}
th{background:#f0f0f0}td:first-child,th:first-child{text-align:left}
tr:nth-child(even) td{background:#fafafa}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:.9em;color:#555}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto;font-size:.85em}
.warn{background:#fff4e5;border-left:4px solid #f0a020;padding:.5em 1em;margin:.6em 0}
.ok{background:#eef8ee;border-left:4px solid #3a3;padding:.5em 1em;margin:.6em 0}
.note{color:#555;font-size:.9em}
"""


def fmt_value(value: Any, digits: int = 4) -> str:
    """Numbers to fixed digits, ints as ints, None/NaN as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "–" if not math.isfinite(value) else f"{value:.{digits}f}"
    return str(value)


@dataclass
class Block:
    kind: str  # heading | text | table | figure | warnings | pre | note
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass
class Document:
    """An ordered list of blocks with a title; see the module docstring."""

    title: str
    blocks: list[Block] = field(default_factory=list)

    # -- building
    def heading(self, text: str, level: int = 2) -> Document:
        self.blocks.append(Block("heading", {"text": text, "level": level}))
        return self

    def text(self, text: str) -> Document:
        self.blocks.append(Block("text", {"text": text}))
        return self

    def note(self, text: str) -> Document:
        self.blocks.append(Block("note", {"text": text}))
        return self

    def table(
        self, headers: Sequence[str], rows: Sequence[Sequence[Any]], *, digits: int = 4
    ) -> Document:
        cells = [[fmt_value(v, digits) for v in row] for row in rows]
        self.blocks.append(Block("table", {"headers": list(headers), "rows": cells}))
        return self

    def figure(self, path: str | os.PathLike, caption: str = "") -> Document:
        self.blocks.append(Block("figure", {"path": Path(path), "caption": caption}))
        return self

    def warnings(self, items: Sequence[str], *, none_text: str = "") -> Document:
        self.blocks.append(Block("warnings", {"items": list(items), "none_text": none_text}))
        return self

    def pre(self, text: str) -> Document:
        self.blocks.append(Block("pre", {"text": text}))
        return self

    # -- rendering
    def to_html(self, *, base_dir: str | os.PathLike | None = None, embed: bool = True) -> str:
        """Self-contained HTML: figures embedded as base64 PNG (or relative links)."""
        esc = html.escape
        out = [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{esc(self.title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{esc(self.title)}</h1>",
        ]
        for block in self.blocks:
            p = block.payload
            if block.kind == "heading":
                level = min(max(int(p["level"]), 2), 4)
                anchor = _slug(p["text"])
                out.append(f'<h{level} id="{anchor}">{esc(p["text"])}</h{level}>')
            elif block.kind == "text":
                out.append(f"<p>{esc(p['text'])}</p>")
            elif block.kind == "note":
                out.append(f'<p class="note">{esc(p["text"])}</p>')
            elif block.kind == "table":
                head = "".join(f"<th>{esc(h)}</th>" for h in p["headers"])
                body = "".join(
                    "<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>"
                    for row in p["rows"]
                )
                out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif block.kind == "figure":
                src = _image_src(p["path"], base_dir, embed)
                if src is None:
                    out.append(f'<p class="note">(figure {esc(p["path"].name)} not available)</p>')
                    continue
                out.append(
                    f'<figure><img src="{src}" alt="{esc(p["caption"] or p["path"].name)}">'
                    f"<figcaption>{esc(p['caption'])}</figcaption></figure>"
                )
            elif block.kind == "warnings":
                if p["items"]:
                    out.extend(f'<div class="warn">⚠ {esc(item)}</div>' for item in p["items"])
                elif p["none_text"]:
                    out.append(f'<div class="ok">{esc(p["none_text"])}</div>')
            elif block.kind == "pre":
                out.append(f"<pre>{esc(p['text'])}</pre>")
        out.append("</body></html>")
        return "\n".join(out) + "\n"

    def to_markdown(self, *, base_dir: str | os.PathLike | None = None) -> str:
        """GitHub-flavoured Markdown; figures as relative links."""
        out = [f"# {self.title}", ""]
        for block in self.blocks:
            p = block.payload
            if block.kind == "heading":
                out += ["#" * min(max(int(p["level"]), 2), 4) + " " + p["text"], ""]
            elif block.kind in ("text", "note"):
                text = p["text"] if block.kind == "text" else f"_{p['text']}_"
                out += [text, ""]
            elif block.kind == "table":
                out.append("| " + " | ".join(_md_cell(h) for h in p["headers"]) + " |")
                out.append("|" + "|".join("---" for _ in p["headers"]) + "|")
                out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in p["rows"]]
                out.append("")
            elif block.kind == "figure":
                out += [f"![{p['caption']}]({_relative(p['path'], base_dir)})", ""]
            elif block.kind == "warnings":
                if p["items"]:
                    out += [f"> **Warning:** {item}" for item in p["items"]] + [""]
                elif p["none_text"]:
                    out += [p["none_text"], ""]
            elif block.kind == "pre":
                out += ["```", p["text"].rstrip("\n"), "```", ""]
        return "\n".join(out).rstrip("\n") + "\n"

    def write(
        self,
        html_path: str | os.PathLike | None,
        md_path: str | os.PathLike | None = None,
        *,
        base_dir: str | os.PathLike | None = None,
        embed: bool = True,
    ) -> None:
        """Write the HTML and/or Markdown renderings atomically."""
        if html_path is not None:
            write_text_atomic(html_path, self.to_html(base_dir=base_dir, embed=embed))
        if md_path is not None:
            write_text_atomic(md_path, self.to_markdown(base_dir=base_dir))


def _slug(text: str) -> str:
    return "".join(c.lower() if c.isalnum() else "-" for c in text).strip("-")


def _md_cell(value: str) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _resolve(path: Path, base_dir) -> Path:
    return path if path.is_absolute() or base_dir is None else Path(base_dir) / path


def _relative(path: Path, base_dir) -> str:
    if base_dir is None:
        return path.as_posix()
    try:
        return _resolve(path, base_dir).resolve().relative_to(Path(base_dir).resolve()).as_posix()
    except ValueError:
        return os.path.relpath(_resolve(path, base_dir), base_dir).replace(os.sep, "/")


def _image_src(path: Path, base_dir, embed: bool) -> str | None:
    full = _resolve(path, base_dir)
    if not full.is_file():
        return None
    if not embed:
        return html.escape(_relative(path, base_dir))
    data = base64.b64encode(full.read_bytes()).decode("ascii")
    return f"data:image/png;base64,{data}"


__all__ = ["Document", "fmt_value"]
