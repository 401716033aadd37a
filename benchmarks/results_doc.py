"""docs/results.md sections: each benchmark writes its own "### " section and regenerates it in place."""

from __future__ import annotations

from pathlib import Path

RESULTS_MD = Path(__file__).resolve().parents[1] / "docs" / "results.md"


def replace_section(block: str, path: Path = RESULTS_MD) -> str:
    """Put ``block`` (starting with its "### " heading line) into ``path``: in place of the section with the
    same heading (which runs to the next "### " or "## " heading), else at the end. Returns what was done."""
    heading = block.splitlines()[0]
    existing = path.read_text() if path.exists() else "# Results\n\n"
    if heading in existing:
        start = existing.index(heading)
        ends = [i for i in (existing.find("\n### ", start + len(heading)), existing.find("\n## ", start + len(heading)))
                if i >= 0]
        end = min(ends) + 1 if ends else len(existing)
        path.write_text(existing[:start] + block.rstrip("\n") + "\n\n" + existing[end:].lstrip("\n"))
        return f"replaced '{heading}' in {path}"
    path.write_text(existing.rstrip() + "\n\n" + block)
    return f"appended '{heading}' to {path}"
