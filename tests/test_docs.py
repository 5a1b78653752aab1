"""The documentation stays true: README.md (the front door) and every docs/*.md.

The configuration reference (docs/configuration.md) matches Pulumi.yaml, CI runs the documented test
command, and every link (between files and to headings), config key, `make` target and stack output the
documents name exists. README stays short, with its first command early.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

import config
import safety

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_MAX_LINES = 260
README_FIRST_COMMAND_BY_LINE = 80


def _documents() -> dict[str, str]:
    """README.md and every docs/*.md, by their path relative to the project."""
    paths = [README, *sorted(DOCS.glob("*.md"))]
    return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in paths}


def _all_text() -> str:
    return "\n".join(_documents().values())


def test_configuration_reference_is_generated_from_pulumi_yaml():
    result = subprocess.run(
        [sys.executable, "-m", "tools.config_reference", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_ci_runs_the_documented_test_command():
    testing = (DOCS / "testing.md").read_text()
    commands = re.findall(r"```bash\n(.*?)```", testing, re.S)
    test_block = next(block for block in commands if "make test" in block)
    assert test_block.strip() == "make test"
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.M)


def test_readme_deploy_commands_use_the_local_backend_and_make_up():
    readme = README.read_text()
    assert "pulumi login --local" in readme and "\nmake up" in readme
    makefile = (ROOT / "Makefile").read_text()
    for target in ("up", "preview", "destroy", "test", "bench"):
        assert re.search(rf"^{target}:", makefile, re.M), target
    assert "--policy-pack policy" in makefile


def test_the_policy_pack_runs_in_the_deploy_venv():
    """`make up` and CI's `pulumi install` create the venv from requirements.txt; the pack uses it."""
    import yaml

    pack = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    assert (ROOT / "policy" / pack["runtime"]["options"]["virtualenv"]).resolve() == (ROOT / "venv").resolve()
    runtime = (ROOT / "requirements.txt").read_text()
    for line in (ROOT / "policy" / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            assert line in runtime, f"{line} is needed at deploy time but missing from requirements.txt"


def test_docs_name_no_removed_key():
    """Keys removed from Pulumi.yaml (REMOVED_KEYS) must not be documented as settings."""
    removed = config.REMOVED_KEYS
    for name, text in _documents().items():
        mentioned = sorted(key for key in removed if key in text)
        assert not mentioned, f"{name} still mentions removed keys: {mentioned}"
        assert ".pulumi-ca" not in text, name


def _section(heading: str) -> tuple[str, str]:
    """(document, body) of the one section titled `heading`, down to the next heading of its level or above."""
    found = []
    for name, text in _documents().items():
        m = re.search(rf"^(#+) {re.escape(heading)}\n", text, re.M)
        if m:
            level = len(m.group(1))
            body = text[m.end() :]
            end = re.search(rf"^#{{1,{level}}} ", body, re.M)
            found.append((name, body[: end.start()] if end else body))
    assert len(found) == 1, (
        f"expected one section {heading!r} in README.md and docs/, found {found and [f[0] for f in found]}"
    )
    return found[0]


def test_docs_have_the_manual_paths_the_storage_errors_point_to():
    """Each storage-layout refusal says `<document>: Changing storage, <entry>`: that entry must exist."""
    manual_paths = safety.LAYOUT_MANUAL_PATHS
    name, section = _section("Changing storage")
    entries = {m.lower() for m in re.findall(r"^- \*\*([^*]+)\*\*", section, re.M)}
    pointers = [
        (document, entry.lower())
        for text in manual_paths.values()
        for document, entry in re.findall(r"(README|docs/[\w.-]+\.md): Changing storage, ([^)]+)\)", text)
    ]
    assert pointers, "no pointers to Changing storage found in LAYOUT_MANUAL_PATHS"
    missing = sorted(entry for _, entry in pointers if entry not in entries)
    assert not missing, f"{name}'s Changing storage has no entry for {missing} (entries: {sorted(entries)})"
    # A pointer that names a document names the one holding the section (README's pointers predate docs/).
    wrong = sorted({document for document, _ in pointers if document != "README" and document != name})
    assert not wrong, f"the storage errors point to {wrong}, but Changing storage is in {name}"


# --------------------------------------------------------------------------- README is a front door


def test_readme_is_a_short_front_door():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move details into docs/"
    first = next((i for i, line in enumerate(lines, 1) if re.match(r"^```(bash|sh|console)\b", line)), None)
    assert first is not None, "README has no command block"
    assert first <= README_FIRST_COMMAND_BY_LINE, f"README's first command is on line {first}"


def test_readme_links_every_document_in_docs():
    readme = README.read_text()
    linked = set(re.findall(r"\]\((docs/[\w.-]+\.md)(?:#[^)]*)?\)", readme))
    documents = {str(p.relative_to(ROOT)) for p in DOCS.glob("*.md")}
    assert documents, "docs/ holds no document"
    assert not sorted(documents - linked), f"README does not link {sorted(documents - linked)}"


def test_the_quickstart_runs_the_example_with_the_stack_outputs():
    """The example exists, and README exports exactly what it reads, from the stack outputs."""
    readme = README.read_text()
    assert "python examples/quickstart.py" in readme
    assert (ROOT / "examples" / "quickstart.py").is_file()
    exported = dict(re.findall(r"^export (MLFLOW_\w+)=\$\(pulumi stack output (\w+)", readme, re.M))
    assert exported == {
        "MLFLOW_TRACKING_URI": "trackingUrl",
        "MLFLOW_TRACKING_USERNAME": "adminUser",
        "MLFLOW_TRACKING_PASSWORD": "adminPassword",
    }
    example = (ROOT / "examples" / "quickstart.py").read_text()
    for variable in exported:
        assert variable in example, variable


# --------------------------------------------------------------------------- what the documents name exists


# A fenced code block, also when indented inside a list item; group 1 is its content.
FENCED = r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```"


def _code(text: str) -> list[str]:
    """Fenced blocks and inline code spans: where the documents give commands and names."""
    blocks = re.findall(FENCED, text, re.S | re.M)
    prose = re.sub(FENCED, "", text, flags=re.S | re.M)
    return blocks + re.findall(r"`([^`\n]+)`", prose)


@pytest.mark.parametrize("name", sorted(_documents()))
def test_every_make_target_a_document_names_exists(name):
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    named = {
        target
        for code in _code(_documents()[name])
        for target in re.findall(r"(?:^|[\s;&|(])make\s+(?:[A-Z_]+=\S+\s+)*([a-z][\w-]*)", code, re.M)
    }
    assert not sorted(named - targets), f"{name} names make targets the Makefile lacks: {sorted(named - targets)}"


def test_the_documents_name_make_targets():
    named = re.findall(r"(?:^|[\s;&|(`])make\s+(?:[A-Z_]+=\S+\s+)*([a-z][\w-]*)", README.read_text(), re.M)
    assert named, "README names no make target"


def _declared_keys() -> set[str]:
    """Pulumi.yaml's `config:` keys, read as the Pulumi CLI reads them."""
    from tools import pulumi_yaml

    return set((pulumi_yaml.load(ROOT / "Pulumi.yaml", name="Pulumi.yaml")["config"] or {}).keys())


def _config_keys_named(text: str) -> set[str]:
    named: set[str] = set()
    for code in _code(text):
        for args in re.findall(r"pulumi config (?:set|rm)((?:[ \t]+(?:\\\n)?\S+)+)", code):
            tokens = args.split()
            skip_value = False
            for token in tokens:
                if skip_value:
                    skip_value = False
                elif token in ("-s", "--stack"):
                    skip_value = True
                elif token.startswith("-") or token == "\\":
                    continue
                else:
                    key = token.strip("'\"").removeprefix("mlflow-platform:")
                    if "--path" in tokens:  # `--path 'key.sub[0]'` sets part of the object or list `key`
                        key = re.split(r"[.\[]", key, maxsplit=1)[0]
                    named.add(key)
                    break
    for line in text.splitlines():
        if "is not a setting of this project" not in line:
            named.update(re.findall(r"mlflow-platform:([A-Za-z][A-Za-z0-9]*)\b", line))
    named -= {"index"}  # the component type tokens `mlflow-platform:index:CnpgOperator`
    return {key for key in named if not key.startswith("<")}


@pytest.mark.parametrize("name", sorted(_documents()))
def test_every_config_key_a_document_names_exists(name):
    """Keys after `pulumi config set/rm` and every `mlflow-platform:<key>` are declared in Pulumi.yaml.

    The one deliberate exception is the misspelt key in the example of `make check`'s output
    (a line that says "is not a setting of this project").
    """
    unknown = sorted(_config_keys_named(_documents()[name]) - _declared_keys())
    assert not unknown, f"{name} names config keys Pulumi.yaml does not declare: {unknown}"


def test_the_documents_name_config_keys():
    assert _config_keys_named(README.read_text()), "README names no config key"
    assert _config_keys_named(_all_text()) - _config_keys_named(README.read_text()), "docs/ names no config key"


@pytest.mark.parametrize("name", sorted(_documents()))
def test_every_stack_output_a_document_names_exists(name):
    exported = set(re.findall(r'pulumi\.export\(\s*"(\w+)"', (ROOT / "__main__.py").read_text()))
    named = set(re.findall(r"pulumi stack output (?:--stack \S+ )?(\w+)", _documents()[name]))
    assert not sorted(named - exported), (
        f"{name} names stack outputs __main__.py does not export: {sorted(named - exported)}"
    )


def test_the_documents_name_stack_outputs():
    assert re.search(r"pulumi stack output (\w+)", README.read_text()), "README names no stack output"


def _github_anchor(heading: str) -> str:
    """GitHub's heading anchor: lower case, markup and punctuation (but - and _) dropped, spaces to hyphens."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(text: str) -> set[str]:
    without_code = re.sub(FENCED, "", text, flags=re.S | re.M)
    anchors: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.+)$", without_code, re.M):
        anchor, n = _github_anchor(heading), 1
        while anchor in anchors:  # GitHub numbers repeated headings
            anchor = f"{_github_anchor(heading)}-{n}"
            n += 1
        anchors.add(anchor)
    return anchors


@pytest.mark.parametrize("name", sorted(_documents()))
def test_links_resolve(name):
    """Links to headings of the same document, to other files, and to headings of other documents."""
    text = _documents()[name]
    here = (ROOT / name).parent
    without_code = re.sub(FENCED, "", text, flags=re.S | re.M)
    problems = []
    for target in re.findall(r"\]\((?!https?://|mailto:)([^)\s]+)\)", without_code):
        path, _, anchor = target.partition("#")
        file = (here / path).resolve() if path else ROOT / name
        if not file.exists():
            problems.append(f"{target}: no file {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file}")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file.read_text(encoding="utf-8")):
            problems.append(f"{target}: no such heading")
    assert not problems, f"{name} has broken links: {problems}"


def test_the_documents_link_each_other():
    readme = README.read_text()
    assert re.search(r"\]\(#[^)]+\)", readme), "README has no internal links"
    assert re.search(r"\]\(docs/[^)]+#[^)]+\)", readme), "README links no heading in docs/"


def test_architecture_diagram_is_a_mermaid_flowchart():
    """GitHub renders ```mermaid blocks; every label is quoted, so special characters cannot break it."""
    blocks = re.findall(r"^```mermaid\n(.*?)^```", _all_text(), re.S | re.M)
    assert blocks, "no Mermaid diagram in README.md or docs/"
    for block in blocks:
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        assert lines[0].startswith("flowchart "), lines[0]
        assert lines.count("end") == sum(line.startswith("subgraph ") for line in lines), "unbalanced subgraph/end"
        for line in lines[1:]:
            # Every node label and edge label is quoted: ["..."], [("...")], |"..."|.
            for label in re.findall(r"\[\(?([^\]]*?)\)?\]|\|([^|]*)\|", line):
                text = label[0] or label[1]
                assert text.startswith('"') and text.endswith('"'), f"unquoted Mermaid label in: {line}"
