"""Generate README's configuration reference from Pulumi.yaml's `config:` block.

`python -m tools.config_reference` rewrites the section between the markers in README.md;
`--check` exits 1 when README is out of date (run by the test suite).
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from settings import declared_config  # noqa: E402

README = ROOT / "README.md"
BEGIN, END = "<!-- config-reference:begin -->", "<!-- config-reference:end -->"


def _markdown_text(text: str) -> str:
    """Escape `<` outside code spans: GitHub drops `<n>` and the like as unknown HTML tags."""
    parts = text.split("`")
    return "`".join(part if inside_code % 2 else part.replace("<", "&lt;") for inside_code, part in enumerate(parts))


def render() -> str:
    lines = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for key, spec in declared_config().items():
        default = spec["default"]
        shown = (
            ", ".join(default)
            if isinstance(default, list)
            else str(default).lower()
            if isinstance(default, bool)
            else json.dumps(default)
            if isinstance(default, dict)
            else default
        )
        description = _markdown_text(spec["description"])
        lines.append(
            f"| `{key}` | {spec['type']} | `{shown}` | {description} |"
            if shown != ""
            else f"| `{key}` | {spec['type']} | (empty) | {description} |"
        )
    return "\n".join(lines)


def updated(text: str) -> str:
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{render()}\n{END}{tail}"


def main() -> int:
    text = README.read_text(encoding="utf-8")
    new = updated(text)
    if "--check" in sys.argv:
        if new != text:
            print("README.md's configuration reference is out of date: run `make docs`", file=sys.stderr)
            return 1
        return 0
    README.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
