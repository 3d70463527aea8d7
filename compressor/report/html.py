"""report.html: one self-contained file (inline CSS, plots as base64 PNG, no network references).

The numbers come from the same functions as report.md (``table_rows``, ``stage_summaries``),
so the two reports cannot disagree.
"""

from __future__ import annotations

import base64
import re
from html import escape
from pathlib import Path

from compressor.core.rundir import atomic_write_text
from compressor.report.markdown import PLOT_TITLES, method_note, pareto_note, stage_summaries, table_rows

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
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{escape(title)}</title>\n"
            f"<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n")


NUMERIC = re.compile(r"^[-+]?[\d.,]+\s*(%|×|M)?$")


def table_html(head: list[str], rows: list[list[str]]) -> str:
    """A table; columns holding only numbers (or blanks) are right-aligned, text columns left-aligned."""
    numeric = [all(NUMERIC.match(str(r[i]).strip()) or not str(r[i]).strip() for r in rows) and any(str(r[i]).strip() for r in rows)
               for i in range(len(head))]

    def cell(tag: str, i: int, value: str) -> str:
        return f"<{tag} class=\"{'num' if numeric[i] else 'txt'}\">{escape(str(value))}</{tag}>"

    th = "".join(cell("th", i, h) for i, h in enumerate(head))
    trs = "".join("<tr>" + "".join(cell("td", i, c) for i, c in enumerate(r)) + "</tr>\n" for r in rows)
    return f"<div class=\"scroll\"><table>\n<thead><tr>{th}</tr></thead>\n<tbody>\n{trs}</tbody></table></div>"


def kv_table(items: dict) -> str:
    rows = "".join(f"<tr><td>{escape(str(k))}</td><td>{escape(_value(v))}</td></tr>\n" for k, v in items.items())
    return f"<table class=\"kv\">\n{rows}</table>"


def _value(v) -> str:
    if v is None:
        return "none"
    if isinstance(v, (list, tuple)):
        return ", ".join(map(str, v)) or "none"
    return str(v)


def img(png: bytes, alt: str) -> str:
    return f"<img src=\"data:image/png;base64,{base64.b64encode(png).decode('ascii')}\" alt=\"{escape(alt)}\">"


def figures_html(figures: dict[str, bytes], metric: str, caption: str = "") -> str:
    """The scatter plots side by side (with ``caption`` under them), then the training curves."""
    def fig(name: str, cls: str = "") -> str:
        attr = f' class="{cls}"' if cls else ""
        return f"<figure{attr}>{img(figures[name], PLOT_TITLES.get(name, name).format(metric=metric))}</figure>"

    out = []
    scatter = [fig(n) for n in ("size", "latency") if n in figures]
    if scatter:
        out.append('<div class="plots">\n' + "\n".join(scatter) + "\n</div>")
        if caption:
            out.append(f'<p class="note">{escape(caption)}</p>')
    if "training" in figures:
        out += ["<h3>Training</h3>", f'<div class="plots">{fig("training", "wide")}</div>']
    return "\n".join(out)


def _inline(text: str) -> str:
    """Escaped text with **bold** kept."""
    return re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", escape(text))


def compression_html(results: dict) -> list[str]:
    from compressor.report.compression import sections

    comp = sections(results)
    if not comp:
        return []
    out = ["<h2>Compression</h2>"]
    for sec in comp:
        out.append(f"<h3>{escape(sec.title)}</h3>")
        out.append("<ul>" + "".join(f"<li>{_inline(line)}</li>" for line in sec.lines) + "</ul>")
        for caption, head, rows in sec.tables:
            out += [f"<p class=\"note\">{escape(caption)}</p>", table_html(head, rows)]
    return out


def health_html(results: dict, figures: dict[str, bytes]) -> list[str]:
    from compressor.report.health import health_section, majority_line

    sec = health_section(results)
    out = [f"<p class=\"note\">{escape(line)}</p>" for line in [majority_line(results)] if line]
    out.append(f"<h2>{escape(sec.title)}</h2>")
    warn = [line for line in sec.lines if line.startswith("**Warning**")]
    out += [f"<div class=\"warn\">{_inline(line)}</div>" for line in warn]
    out.append("<ul>" + "".join(f"<li>{_inline(line)}</li>" for line in sec.lines if line not in warn) + "</ul>")
    for caption, head, rows in sec.tables:
        out += [f"<p class=\"note\">{escape(caption)}</p>", table_html(head, rows)]
    if "confusion" in figures:
        out.append(f"<div class=\"plots\"><figure>{img(figures['confusion'], PLOT_TITLES['confusion'])}</figure></div>")
    return out


def render_html(results: dict, figures: dict[str, bytes], recipe_text: str | None = None) -> str:
    from compressor import __version__

    head, rows = table_rows(results)
    metric = results["primary_metric"]["name"]
    data = ", ".join(f"{k} {v}" for k, v in results.get("data", {}).items())
    body = [f"<h1>compressor run: {escape(results['name'])}</h1>",
            f"<p class=\"sub\">Model <code>{escape(str(results['model']))}</code> · task {escape(results['task'])} · "
            f"seed {escape(str(results['seed']))} · trained on {escape(str(results['device']))}"
            + (f" · data: {escape(data)}" if data else "") + "</p>",
            "<h2>Variants</h2>", table_html(head, rows),
            f"<p class=\"note\">{escape(method_note(results))}</p>"]
    body += [f"<div class=\"warn\">{escape(n)}</div>" for n in results.get("bench_notes", [])]
    from compressor.report import plan_check
    from compressor.report.labels import split_table

    if (test := split_table(results, "test")) is not None:
        body += ["<h2>Test split</h2>", table_html(*test),
                 "<p class=\"note\">The test split was held out from training and checkpoint selection; the variants "
                 "table uses dev.</p>"]
    body += health_html(results, figures)
    if any(k in figures for k in ("size", "latency", "training")):
        body += ["<h2>Plots</h2>", figures_html(figures, metric, pareto_note(results))]
    body += compression_html(results)
    if checks := plan_check.check_rows(results):
        body += ["<h2>Plan vs measurement</h2>", table_html(plan_check.HEAD, checks),
                 f"<p class=\"note\">{escape(plan_check.NOTE)}</p>"]
    body += ["<h2>Stages</h2>", "<ul class=\"stages\">"]
    for stage, seconds, extra in stage_summaries(results):
        body.append(f"<li><b>{escape(stage)}</b> ({seconds:.1f} s)" + (": " + escape("; ".join(extra)) if extra else "") + "</li>")
    body.append("</ul>")
    body += ["<h2>Reproduction</h2>",
             "<pre>" + escape("\n".join(results.get("reproduce")
                                       or ["compressor run recipe.yaml   # the recipe.yaml in this run directory"]))
             + "</pre>" + ("<p class=\"note\">The recipe as run is reproduced below.</p>" if recipe_text else ""),
             kv_table({"seed": results.get("seed"), "compressor": __version__, "run time": f"{results.get('seconds', '?')} s",
                       **results.get("fingerprint", {})})]
    if recipe_text:
        body += ["<h3>recipe.yaml</h3>", f"<pre>{escape(recipe_text)}</pre>"]
    return page(f"compressor: {results['name']}", body)


def write_html(run_dir: Path, results: dict, figures: dict[str, bytes]) -> Path:
    """report.html in ``run_dir``, with the run's recipe.yaml quoted for reproduction."""
    run_dir = Path(run_dir)
    recipe = run_dir / "recipe.yaml"
    text = recipe.read_text(encoding="utf-8", errors="replace") if recipe.is_file() else None
    out = run_dir / "report.html"
    atomic_write_text(out, render_html(results, figures, text))
    return out
