"""The report's sections, in order: the registration of every section (one line each).

A new section: write ``report/<name>.py`` with ``def <name>_section(results: dict) -> Section | None`` (blocks from
``report/document.py``) and add one ``SECTIONS.add`` line below. report.md and report.html both render it.
"""

from __future__ import annotations

from compressor.report import compression, generation, health, plan_check, plots, reproduction, splits, stages, variants
from compressor.report.document import Section, SectionRegistry

SECTIONS = SectionRegistry()
SECTIONS.add("variants", variants.variants_section)
SECTIONS.add("generation", generation.generation_section)
SECTIONS.add("test-split", splits.test_split_section)
SECTIONS.add("health", health.health_section)
SECTIONS.add("plots", plots.plots_section)
SECTIONS.add("compression", compression.compression_section)
SECTIONS.add("plan-check", plan_check.plan_section)
SECTIONS.add("stages", stages.stages_section)
SECTIONS.add("reproduction", reproduction.reproduction_section)


def build(results: dict) -> list[Section]:
    return SECTIONS.build(results)
