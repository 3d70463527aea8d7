"""report.md (every registered section, rendered as Markdown), writing the report files, and the rich table printed
at the end of a run."""

from __future__ import annotations

from pathlib import Path

from compressor.core.rundir import atomic_write_text
from compressor.report import sections as report_sections
from compressor.report.common import PLOT_TITLES, md_table
from compressor.report.document import Code, Figures, KeyValue, Notes, Para, Section, Table


def _value(v) -> str:
    return ", ".join(map(str, v)) if isinstance(v, list) else str(v)


def block_md(b, plots: dict[str, str], metric: str) -> list[str]:
    if isinstance(b, Para):
        return ["", b.text]
    if isinstance(b, Notes):
        return ["", "Notes:"] + [f"- {n}" for n in b.items]
    if isinstance(b, Table):
        return ["", *([f"{b.caption}:", ""] if b.caption else []), md_table(b.head, b.rows)]
    if isinstance(b, Figures):
        shown = [n for n in b.names if n in plots]
        if not shown:
            return []
        out = [""] + [f"![{PLOT_TITLES.get(n, n).format(metric=metric)}]({plots[n]})" for n in shown]
        return out + (["", b.caption] if b.caption_shown(plots) else [])
    if isinstance(b, Code):
        return ["", "```", *b.lines, "```"]
    if isinstance(b, KeyValue):
        return ["", "| | |", "|---|---|"] + [f"| {k} | {_value(v)} |" for k, v in b.items.items()]
    raise TypeError(f"report.md: no rendering for {type(b).__name__}")


def section_md(sec: Section, plots: dict[str, str], metric: str, level: int = 2) -> list[str]:
    out = ["", "#" * level + " " + sec.title]
    if sec.lines:
        out += [""] + [f"- {line}" for line in sec.lines]
    for caption, head, rows in sec.tables:
        out += ["", f"{caption}:", "", md_table(head, rows)]
    for b in sec.blocks:
        out += block_md(b, plots, metric)
    for sub in sec.subsections:
        out += section_md(sub, plots, metric, level + 1)
    return out


def render_markdown(results: dict, plots: dict[str, str] | None = None) -> str:
    """report.md; ``plots`` maps a figure name (size, latency, training, confusion) to its PNG file beside report.md."""
    plots = plots or {}
    metric = results["primary_metric"]["name"]
    out = [
        f"# compressor run: {results['name']}",
        "",
        f"Model `{results['model']}`, task {results['task']}, seed {results['seed']}, trained on {results['device']}. "
        f"Data: " + ", ".join(f"{k} {v}" for k, v in results.get("data", {}).items()) + ".",
    ]
    for sec in report_sections.build(results):
        if sec.visible(plots):
            out += section_md(sec, plots, metric)
    return "\n".join(out) + "\n"


def write_report(run_dir: Path, results: dict) -> None:
    """report.md with its plots as PNG files beside it, and the self-contained report.html."""
    from compressor.report.html import write_html
    from compressor.report.plots import run_figures, write_figures
    from compressor.report.reproduction import reproduction

    run_dir = Path(run_dir)
    results = {**results, "reproduce": reproduction(run_dir, results["name"])}
    figures = run_figures(results)
    files = write_figures(run_dir, "report", figures)
    atomic_write_text(run_dir / "report.md", render_markdown(results, files))
    write_html(run_dir, results, figures)


def print_rows(title: str, head: list[str], rows: list[list[str]], left: tuple[str, ...] = ("artifact", "run")) -> None:
    """A rich table on stdout: text columns left-aligned, numbers right-aligned."""
    from rich.table import Table as RichTable

    from compressor.core.console import stdout_console

    t = RichTable(title=title)
    for h in head:
        t.add_column(h, justify="left" if h in left else "right")
    for r in rows:
        t.add_row(*r)
    stdout_console().print(t)


def print_table(results: dict, width: int | None = None) -> str:
    """The end-of-run summary for the terminal (80 columns fit; the full table is in report.md)."""
    from compressor.report.terminal import print_summary, run_summary

    return print_summary(f"{results['name']}: {results['task']}", *run_summary(results), width=width)
