"""mkdocs hook: a line `<!-- generated: NAME -->` in a page becomes the table NAME of
docgen.reference, made from the code as the site is built (mkdocs.yml: hooks)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # mkdocs loads hooks by path

from docgen.reference import generate

MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)


def on_page_markdown(markdown: str, **_) -> str:
    return MARKER.sub(lambda found: generate(found.group(1)), markdown)
