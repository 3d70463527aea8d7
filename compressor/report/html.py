"""report.html: one self-contained file (inline CSS, plots as base64 PNG, no network references).

It renders the same registered sections as report.md (``report/sections.py``), so the two reports cannot
disagree.
"""

from __future__ import annotations

import base64
import re
from html import escape
from pathlib import Path

from compressor.core.rundir import atomic_write_text
from compressor.report import sections as report_sections
from compressor.report.common import PLOT_TITLES
from compressor.report.document import Code, Figures, KeyValue, Notes, Para, Section, Table

CSS = """
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: #1d2330;
       max-width: 1240px; margin: 24px auto; padding: 0 24px; background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; } h3 { font-size: 15px; margin: 18px 0 8px; } h2 { font-size: 17px; margin: 28px 0 10px; border-bottom: 1px solid #dde1e8;
     padding-bottom: 4px; }
.sub { color: #566074; margin: 0 0 8px; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
th, td { padding: 5px 10px; border-bottom: 1px solid #e6e9ef; text-align: left; white-space: nowrap; }
.num { text-align: right; }
th { background: #f4f6f9; font-weight: 600; }
tr:hover td { background: #fafbfc; }
.scroll { overflow-x: auto; }
.note { color: #566074; font-size: 13px; max-width: 900px; }
.warn { background: #fff6e0; border-left: 4px solid #e0a000; padding: 6px 10px; margin: 8px 0; font-size: 13px; }
.plots { display: flex; flex-wrap: wrap; gap: 16px; }
.plots figure { margin: 0; flex: 1 1 520px; max-width: 640px; }
.plots figure.wide { flex-basis: 100%; max-width: 1060px; }
img { max-width: 100%; height: auto; border: 1px solid #eef0f4; }
figcaption { font-size: 12px; color: #566074; }
pre { background: #f6f8fa; padding: 10px 12px; font-size: 12.5px; overflow-x: auto; border-radius: 4px; }
ul.stages li { margin: 3px 0; }
table.kv td { text-align: left; } table.kv td:first-child { color: #566074; }
"""


def page(title: str, body: list[str]) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{escape(title)}</title>\n'
        f"<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


NUMERIC = re.compile(r"^[-+]?[\d.,]+\s*(%|×|M)?$")


def table_html(head: list[str], rows: list[list[str]]) -> str:
    """A table; columns holding only numbers (or blanks) are right-aligned, text columns left-aligned."""
    numeric = [
        all(NUMERIC.match(str(r[i]).strip()) or not str(r[i]).strip() for r in rows) and any(str(r[i]).strip() for r in rows)
        for i in range(len(head))
    ]

    def cell(tag: str, i: int, value: str) -> str:
        return f'<{tag} class="{"num" if numeric[i] else "txt"}">{escape(str(value))}</{tag}>'

    th = "".join(cell("th", i, h) for i, h in enumerate(head))
    trs = "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(r)) + "</tr>\n" for r in rows)
    return f'<div class="scroll"><table>\n<thead><tr>{th}</tr></thead>\n<tbody>\n{trs}</tbody></table></div>'


def kv_table(items: dict) -> str:
    rows = "".join(f"<tr><td>{escape(str(k))}</td><td>{escape(_value(v))}</td></tr>\n" for k, v in items.items())
    return f'<table class="kv">\n{rows}</table>'


def _value(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v)) or "none"
    return str(v)


def img(png: bytes, alt: str) -> str:
    return f'<img src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}" alt="{escape(alt)}">'


def figures_html(figures: dict[str, bytes], metric: str, caption: str = "", names: list[str] | None = None) -> str:
    """The figures in ``names`` that were drawn (default: size and latency side by side, then training), with
    ``caption`` under them."""
    names = [n for n in (names or ["size", "latency", "training"]) if n in figures]
    if not names:
        return ""
    wide = ' class="wide"'
    figs = [
        f"<figure{wide if n == 'training' else ''}>{img(figures[n], PLOT_TITLES.get(n, n).format(metric=metric))}</figure>"
        for n in names
    ]
    out = ['<div class="plots">\n' + "\n".join(figs) + "\n</div>"]
    if caption:
        out.append(f'<p class="note">{escape(caption)}</p>')
    return "\n".join(out)


def _inline(text: str) -> str:
    """Escaped text with **bold** kept."""
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", escape(text))


def block_html(b, figures: dict[str, bytes], metric: str) -> list[str]:
    if isinstance(b, Para):
        return [f'<p class="{"warn" if b.kind == "warn" else "note"}">{_inline(b.text)}</p>']
    if isinstance(b, Notes):
        return [f'<div class="warn">{escape(n)}</div>' for n in b.items]
    if isinstance(b, Table):
        return ([f'<p class="note">{escape(b.caption)}</p>'] if b.caption else []) + [table_html(b.head, b.rows)]
    if isinstance(b, Figures):
        got = figures_html(figures, metric, b.caption if b.caption_shown(figures) else "", b.names)
        return [got] if got else []
    if isinstance(b, Code):
        return ["<pre>" + escape("\n".join(b.lines)) + "</pre>"]
    if isinstance(b, KeyValue):
        return [kv_table(b.items)]
    raise TypeError(f"report.html: no rendering for {type(b).__name__}")


def section_html(sec: Section, figures: dict[str, bytes], metric: str, level: int = 2) -> list[str]:
    out = [f"<h{level}>{escape(sec.title)}</h{level}>"]
    warn = [line for line in sec.lines if line.startswith("**Warning**")]
    out += [f'<div class="warn">{_inline(line)}</div>' for line in warn]
    rest = [line for line in sec.lines if line not in warn]
    if rest:
        out.append("<ul>" + "".join(f"<li>{_inline(line)}</li>" for line in rest) + "</ul>")
    for caption, head, rows in sec.tables:
        out += [f'<p class="note">{escape(caption)}</p>', table_html(head, rows)]
    for b in sec.blocks:
        out += block_html(b, figures, metric)
    for sub in sec.subsections:
        out += section_html(sub, figures, metric, level + 1)
    return out


def render_html(results: dict, figures: dict[str, bytes], recipe_text: str | None = None) -> str:
    metric = results["primary_metric"]["name"]
    data = ", ".join(f"{k} {v}" for k, v in results.get("data", {}).items())
    body = [
        f"<h1>compressor run: {escape(results['name'])}</h1>",
        f'<p class="sub">Model <code>{escape(str(results["model"]))}</code> · task {escape(results["task"])} · '
        f"seed {escape(str(results['seed']))} · trained on {escape(str(results['device']))}"
        + (f" · data: {escape(data)}" if data else "")
        + "</p>",
    ]
    for sec in report_sections.build(results):
        if sec.visible(figures):
            body += section_html(sec, figures, metric)
    if recipe_text:
        body += ['<p class="note">The recipe as run:</p>', "<h3>recipe.yaml</h3>", f"<pre>{escape(recipe_text)}</pre>"]
    return page(f"compressor: {results['name']}", body)


def write_html(run_dir: Path, results: dict, figures: dict[str, bytes]) -> Path:
    """report.html in ``run_dir``, with the run's recipe.yaml quoted for reproduction."""
    run_dir = Path(run_dir)
    recipe = run_dir / "recipe.yaml"
    text = recipe.read_text(encoding="utf-8", errors="replace") if recipe.is_file() else None
    out = run_dir / "report.html"
    atomic_write_text(out, render_html(results, figures, text))
    return out
