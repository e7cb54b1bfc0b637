"""Markdown blocks a bench script owns: `<!-- generated: SCRIPT NAME -->` … `<!-- end generated -->` in a doc, replaced
whole by the script's output (`--update`) or compared with it (`--check`), so a doc's tables are always a command's."""
from __future__ import annotations

import re
from pathlib import Path


def regenerated(text: str, script: str, sections: dict[str, list[str]], doc: Path) -> str:
    """`text` with each of `script`'s blocks named in `sections` replaced by its lines."""
    for name, lines in sections.items():
        marker = f"<!-- generated: {script} {name} -->"
        pattern = re.compile(rf"({re.escape(marker)}\n).*?(<!-- end generated -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"{doc}: no '{marker}' block to update")
        text = pattern.sub(lambda m: m.group(1) + "\n".join(lines) + "\n" + m.group(2), text)
    return text


def update_or_check(doc: Path, script: str, sections: dict[str, list[str]], check: bool, source: str) -> int:
    """Rewrite `doc`'s blocks (check=False) or report whether they already hold `sections` (0) or not (1)."""
    text = doc.read_text()
    new = regenerated(text, script, sections, doc)
    if check:
        if new != text:
            print(f"{doc}: the {script} tables differ from what {source} gives; run `make results`")
            return 1
        print(f"{doc}: the {script} tables are what {source} gives")
        return 0
    doc.write_text(new)
    print(f"{doc}: {len(sections)} {script} tables regenerated")
    return 0
