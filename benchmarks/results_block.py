"""Rewrite one generated block of benchmarks/RESULTS.md, between ``<!-- TAG:begin -->`` and ``<!-- TAG:end -->``."""

from __future__ import annotations

import re
from pathlib import Path


def update_block(path: str | Path, tag: str, block: str) -> None:
    """Replace the block tagged ``tag`` (or append it) and keep the rest of the file as it is."""
    p = Path(path)
    text = p.read_text() if p.exists() else "# Benchmark results\n"
    new = f"<!-- {tag}:begin -->\n{block}\n<!-- {tag}:end -->"
    pattern = re.compile(rf"<!-- {re.escape(tag)}:begin -->.*?<!-- {re.escape(tag)}:end -->", re.S)
    text = pattern.sub(lambda _m: new, text) if pattern.search(text) else text.rstrip() + "\n\n" + new + "\n"
    p.write_text(text)
