"""``pkg://package/sub/path``: a file shipped inside an installed Python package, confined to that package.

One rule, used by the recipe schema (``validate``: spelling only, nothing imported) and by
:func:`compressor.models.resolve` (the file itself, after symlinks): the sub-path is relative,
holds no ``..`` or empty (``//``) segment, and what it names lies inside the package's folder.
"""

from __future__ import annotations

PREFIX = "pkg://"


def split_pkg(spec: str) -> tuple[str, str]:
    """``pkg://package/a/b`` -> ("package", "a/b"); a ValueError (one line) for a path that would leave the package."""
    rest = spec[len(PREFIX) :]
    package, _, sub = rest.partition("/")
    if not package or not package.isidentifier():
        raise ValueError(f"{spec}: expected pkg://<python package>/<path inside it>")
    if sub:
        parts = sub.split("/")
        if any(p == "" for p in parts[:-1]):
            raise ValueError(f"{spec}: '//' in a pkg:// path (it would name a path outside the package)")
        if any(p in ("..", ".") or "\\" in p for p in parts):
            raise ValueError(f"{spec}: '..' (or '.') in a pkg:// path; it must stay inside package '{package}'")
        if "\x00" in sub:
            raise ValueError(f"{spec}: NUL character in a pkg:// path")
    return package, sub.rstrip("/")
