"""Generate docs/configuration.md, the configuration reference, from Pulumi.yaml's `config:` block.

`python -m tools.config_reference` (`make docs`) writes docs/configuration.md; `--check` exits 1 when
it is out of date (run by the test suite). Pulumi.yaml is read as the Pulumi CLI reads it
(tools.pulumi_yaml), so the reference shows exactly the declaration the CLI uses.
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools import pulumi_yaml  # noqa: E402

PROJECT_FILE = ROOT / "Pulumi.yaml"
REFERENCE = ROOT / "docs" / "configuration.md"
BEGIN, END = "<!-- config-reference:begin -->", "<!-- config-reference:end -->"
HEADER = """# Configuration reference

Set with `pulumi config set <key> <value>`; credentials with `pulumi config set --secret <key> <value>`.
Generated from `Pulumi.yaml` by `make docs`: edit the descriptions there, not here.
`make check` validates a stack's file against these keys offline. The stack files
(`Pulumi.dev.yaml`, `Pulumi.prod.yaml`, `Pulumi.cluster.yaml`, `profiles/pr.yaml`) set some of them per
profile: [profiles-and-sizing.md](profiles-and-sizing.md).
"""


def declared_config(project_file: Path = PROJECT_FILE) -> dict[str, dict]:
    """The `config:` block of Pulumi.yaml: key -> {type, default, description}, as the CLI reads it."""
    return pulumi_yaml.load(project_file, name=project_file.name)["config"]


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


def document() -> str:
    """The whole of docs/configuration.md."""
    return f"{HEADER}\n{BEGIN}\n{render()}\n{END}\n"


def main() -> int:
    new = document()
    if "--check" in sys.argv:
        current = REFERENCE.read_text(encoding="utf-8") if REFERENCE.exists() else ""
        if new != current:
            print("docs/configuration.md is out of date: run `make docs`", file=sys.stderr)
            return 1
        return 0
    REFERENCE.parent.mkdir(exist_ok=True)
    REFERENCE.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
