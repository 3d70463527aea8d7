"""Duplicate texts in classification data, reported in full.

A text (compared stripped and lower-cased) may occur several times in one file, in several splits, and
with different labels. The rules, the same for ``compressor run`` and ``compressor eval``:

- a text belongs to the first split it occurs in, in the order test, dev, train (evaluation files win); its
  copies in later splits are dropped ("overlap"), so no text is both trained on and evaluated on;
- within its split, one row is kept and the other copies are dropped ("duplicate");
- a text whose copies carry different labels (anywhere) is a *conflict*; ``split.conflicts`` decides:
  ``keep-first`` keeps the first row's label, ``majority`` the most common label among the rows of its split
  (ties: the earliest), ``drop`` drops every row of it.

With ``split.dedupe: false`` nothing is dropped, but duplicates and conflicts are still counted.
Every row of a repeated text is listed (``listing``), for ``duplicates.csv`` in the run folder.
"""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np

ORDER = ("test", "dev", "train")


def text_key(t):
    """A text (or text pair) as compared for duplicates: stripped and lower-cased."""
    return t.strip().lower() if isinstance(t, str) else tuple(x.strip().lower() for x in t)


def _choose(own: list[tuple[str, int]], label, policy: str) -> int | None:
    """The label the kept row gets: the first row's (keep-first) or the most common (majority)."""
    labels = [label(s, i) for s, i in own]
    if policy != "majority" or labels[0] is None:
        return labels[0]
    counts = Counter(labels)
    top = max(counts.values())
    return next(v for v in labels if counts[v] == top)  # ties: the earliest row's label


def dedupe(splits: dict, policy: str = "keep-first", apply: bool = True, first_row: dict[str, int] | None = None):
    """Returns (splits, report, listing). ``splits`` maps a split name to a ``data.Split``."""
    names = [n for n in ORDER if n in splits]
    first_row = first_row or {}

    def label(s: str, i: int):
        lab = splits[s].labels
        return None if lab is None else int(lab[i])

    groups: dict = {}
    for name in names:
        for i, t in enumerate(splits[name].texts):
            groups.setdefault(text_key(t), []).append((name, i))
    counts = {n: {"read": len(splits[n]), "duplicates": 0, "overlap": 0, "conflicts": 0} for n in names}
    keep: dict[str, dict[int, int | None]] = {n: {} for n in names}  # split -> row -> label override (None: as read)
    listing: list[dict] = []
    repeated = conflicting = 0
    for occ in groups.values():
        if len(occ) == 1:
            keep[occ[0][0]][occ[0][1]] = None
            continue
        repeated += 1
        owner = occ[0][0]
        conflict = len({label(s, i) for s, i in occ}) > 1
        conflicting += conflict
        own = [(s, i) for s, i in occ if s == owner]
        kept, chosen = (None, None) if conflict and policy == "drop" else (own[0], _choose(own, label, policy))
        for s, i in occ:
            reason = "kept" if (s, i) == kept else ("conflict" if kept is None else "overlap" if s != owner else "duplicate")
            if reason != "kept":
                counts[s][reason + "s" if reason != "overlap" else reason] += 1
            if reason == "kept" or not apply:
                keep[s][i] = chosen if apply and reason == "kept" and chosen != label(s, i) else None
            listing.append(
                {
                    "text": splits[s].texts[i],
                    "split": s,
                    "row": i + first_row.get(s, 1),
                    "label": label(s, i),
                    "conflict": conflict,
                    "action": reason if apply else f"kept (would be: {reason})",
                    "kept_label": chosen if reason == "kept" else None,
                }
            )
    out = {}
    for name in names:
        rows = sorted(keep[name])
        split = splits[name].take(rows)
        if split.labels is not None:
            split.labels = np.asarray(
                [keep[name][r] if keep[name][r] is not None else split.labels[j] for j, r in enumerate(rows)], dtype=np.int64
            )
        out[name] = split
        counts[name]["kept"] = len(split)
    report = {"policy": policy, "applied": apply, "repeated_texts": repeated, "conflicting_texts": conflicting, "splits": counts}
    return out, report, listing


def summary(report: dict) -> list[str]:
    """One line per split that has duplicates, and one for conflicts."""
    lines = []
    verb = "dropped" if report.get("applied", True) else "found (kept: split.dedupe is off)"
    for name, c in report["splits"].items():
        parts = [
            f"{c['duplicates']} duplicate(s) within the file" if c["duplicates"] else "",
            f"{c['overlap']} also in an earlier split (test > dev > train)" if c["overlap"] else "",
            f"{c['conflicts']} with conflicting labels (policy drop)" if c["conflicts"] else "",
        ]
        parts = [p for p in parts if p]
        if parts:
            lines.append(
                f"data.{name}: {sum(c[k] for k in ('duplicates', 'overlap', 'conflicts'))} row(s) {verb}: " + ", ".join(parts)
            )
    if report["conflicting_texts"]:
        lines.append(f"{report['conflicting_texts']} text(s) occur with conflicting labels (split.conflicts: {report['policy']})")
    return lines


def write_listing(path: Path, listing: list[dict], label_names: list[str] | None) -> None:
    """duplicates.csv: every row of every repeated text, with what was done to it."""

    def name(v):
        return "" if v is None else (label_names[v] if label_names and 0 <= v < len(label_names) else str(v))

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "split", "row", "label", "conflicting_labels", "action", "label_kept"])
        for r in sorted(listing, key=lambda r: (text_key(r["text"]), ORDER.index(r["split"]), r["row"])):
            text = r["text"] if isinstance(r["text"], str) else " ||| ".join(r["text"])
            w.writerow(
                [
                    text,
                    r["split"],
                    r["row"],
                    name(r["label"]),
                    "yes" if r["conflict"] else "no",
                    r["action"],
                    name(r["kept_label"]),
                ]
            )
    tmp.replace(path)


LIMITS = {"train": "max_train_samples", "validation": "max_eval_samples", "dev": "max_eval_samples", "test": "max_eval_samples"}


def count_lines(counts: dict[str, dict], label: dict[str, str] | None = None, limits: dict[str, str] | None = None) -> list[str]:
    """Rows read / dropped / split off / left out by the sample limits / used, one line per split."""
    limits = {**{k: f"data.{v}" for k, v in LIMITS.items()}, **(limits or {})}
    lines = []
    for name in [n for n in ("train", "validation", "dev", "test") if n in counts]:
        c = counts[name]
        where = (label or {}).get(name, f"data.{name}")
        parts = [f"{c['read']} rows read" if "read" in c else f"{c['from_train']} rows split off from train"]
        dropped = sum(c.get(k, 0) for k in ("duplicates", "overlap", "conflicts"))
        if "read" in c:
            parts.append(f"{dropped} dropped as duplicates" if dropped else "no duplicates dropped")
        if c.get("split_off"):
            parts.append(f"{c['split_off']} split off into dev / test" + (" / validation" if "validation" in counts else ""))
        if c.get("sampled_out"):
            parts.append(f"{c['sampled_out']} left out by {limits[name]}")
        parts.append(f"{c.get('used', c.get('kept', 0))} used")
        lines.append(f"{where}: " + ", ".join(parts))
    return lines
