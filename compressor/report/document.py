"""The report as a small document: sections made of blocks, built from metrics.json by registered section builders
and rendered alike by ``markdown.py`` and ``html.py``.

A new report section is one module with a builder ``fn(results: dict) -> Section | None`` plus one registration
line in ``report/sections.py`` (``SECTIONS.add("name", module.builder)``; the order of those lines is the order
of the report).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Para:
    """A paragraph; ``note`` paragraphs are set smaller in HTML, ``warn`` ones highlighted."""

    text: str
    kind: str = "note"


@dataclass
class Notes:
    """Caveats about the measurement: "Notes:" and a list in Markdown, one highlighted box each in HTML."""

    items: list[str]


@dataclass
class Table:
    head: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figures:
    """Figures by name (size, latency, training, confusion); a renderer shows the ones it has, then ``caption`` when
    one of ``caption_for`` (default: any) was shown."""

    names: list[str]
    caption: str = ""
    caption_for: tuple[str, ...] = ()

    def caption_shown(self, drawn) -> bool:
        return bool(self.caption) and any(n in drawn for n in (self.caption_for or self.names))


@dataclass
class Code:
    lines: list[str]


@dataclass
class KeyValue:
    items: dict


Block = Para | Notes | Table | Figures | Code | KeyValue


@dataclass
class Section:
    """A titled part of the report, rendered in this order: ``lines`` (a bulleted list), ``tables``
    ((caption, head, rows) each), ``blocks`` (anything else), then ``subsections`` one heading level down."""

    title: str
    lines: list[str] = field(default_factory=list)
    tables: list[tuple[str, list[str], list[list[str]]]] = field(default_factory=list)
    blocks: list = field(default_factory=list)
    subsections: list[Section] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.lines or self.tables or self.blocks or self.subsections)

    def visible(self, figures) -> bool:
        """False for a section that holds only figures none of which was drawn (``figures``: the names drawn)."""
        if self.lines or self.tables or self.subsections:
            return True
        return any(not isinstance(b, Figures) or any(n in figures for n in b.names) for b in self.blocks)


Builder = Callable[[dict], "Section | None"]


class SectionRegistry:
    """Report sections by name, in registration order."""

    def __init__(self) -> None:
        self._builders: dict[str, Builder] = {}

    def add(self, name: str, fn: Builder) -> None:
        if name in self._builders:
            raise ValueError(f"report section {name!r} registered twice")
        self._builders[name] = fn

    def names(self) -> list[str]:
        return list(self._builders)

    def get(self, name: str) -> Builder:
        try:
            return self._builders[name]
        except KeyError:
            raise KeyError(f"no report section {name!r} (known: {', '.join(self._builders)})") from None

    def build(self, results: dict) -> list[Section]:
        """Every registered section that has something to say about ``results``."""
        out = []
        for fn in self._builders.values():
            sec = fn(results)
            if sec is not None and not sec.empty():
                out.append(sec)
        return out
