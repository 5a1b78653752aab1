"""README stays true: its configuration reference matches Pulumi.yaml and CI runs its test command."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_configuration_reference_is_generated_from_pulumi_yaml():
    result = subprocess.run(
        [sys.executable, "-m", "tools.config_reference", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"```bash\n(.*?)```", readme, re.S)
    test_block = next(block for block in commands if "make test" in block)
    assert test_block.strip() == "make test"
    assert re.search(r"^make test$", (ROOT / ".ci" / "run").read_text(), re.M)


def test_readme_deploy_commands_use_the_local_backend_and_make_up():
    readme = (ROOT / "README.md").read_text()
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


def test_readme_names_no_removed_key():
    """Keys removed from Pulumi.yaml (settings.REMOVED_KEYS) must not be documented as settings."""
    import settings

    readme = (ROOT / "README.md").read_text()
    mentioned = sorted(key for key in settings.REMOVED_KEYS if key in readme)
    assert not mentioned, f"README still mentions removed keys: {mentioned}"
    assert ".pulumi-ca" not in readme


def test_readme_has_the_manual_paths_the_storage_errors_point_to():
    """Each storage-layout refusal says `README: Changing storage, <entry>`: that entry must exist."""
    import settings

    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Changing storage", 1)[1].split("\n## ", 1)[0]
    entries = {m.lower() for m in re.findall(r"^- \*\*([^*]+)\*\*", section, re.M)}
    pointers = {
        m.lower()
        for text in settings._LAYOUT_MANUAL_PATHS.values()
        for m in re.findall(r"README: Changing storage, ([^)]+)\)", text)
    }
    assert pointers, "no README pointers found in settings._LAYOUT_MANUAL_PATHS"
    missing = sorted(p for p in pointers if p not in entries)
    assert not missing, f"README's Changing storage has no entry for {missing} (entries: {sorted(entries)})"


# --------------------------------------------------------------------------- what README names exists


# A fenced code block, also when indented inside a list item; group 1 is its content.
FENCED = r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```"


def _readme() -> str:
    return (ROOT / "README.md").read_text(encoding="utf-8")


def _code(readme: str) -> list[str]:
    """Fenced blocks and inline code spans: where README gives commands and names."""
    blocks = re.findall(FENCED, readme, re.S | re.M)
    prose = re.sub(FENCED, "", readme, flags=re.S | re.M)
    return blocks + re.findall(r"`([^`\n]+)`", prose)


def test_every_make_target_readme_names_exists():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    named = {
        target
        for code in _code(_readme())
        for target in re.findall(r"(?:^|[\s;&|(])make\s+(?:[A-Z_]+=\S+\s+)*([a-z][\w-]*)", code, re.M)
    }
    assert named, "README names no make target"
    assert not sorted(named - targets), f"README names make targets the Makefile lacks: {sorted(named - targets)}"


def _declared_keys() -> set[str]:
    import yaml

    return set((yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"] or {}).keys())


def test_every_config_key_readme_names_exists():
    """Keys after `pulumi config set/rm` and every `mlflow-platform:<key>` are declared in Pulumi.yaml.

    The one deliberate exception is the misspelt key in README's example of `make check`'s output
    (a line that says "is not a setting of this project").
    """
    declared = _declared_keys()
    readme = _readme()
    named: set[str] = set()
    for code in _code(readme):
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
    for line in readme.splitlines():
        if "is not a setting of this project" not in line:
            named.update(re.findall(r"mlflow-platform:([A-Za-z][A-Za-z0-9]*)\b", line))
    named -= {"index"}  # the component type tokens `mlflow-platform:index:CnpgOperator`
    placeholders = {key for key in named if key.startswith("<")}
    assert named - placeholders, "README names no config key"
    unknown = sorted(named - placeholders - declared)
    assert not unknown, f"README names config keys Pulumi.yaml does not declare: {unknown}"


def test_every_stack_output_readme_names_exists():
    exported = set(re.findall(r'pulumi\.export\("(\w+)"', (ROOT / "__main__.py").read_text()))
    named = set(re.findall(r"pulumi stack output (\w+)", _readme()))
    assert named, "README names no stack output"
    assert not sorted(named - exported), (
        f"README names stack outputs __main__.py does not export: {sorted(named - exported)}"
    )


def _github_anchor(heading: str) -> str:
    """GitHub's heading anchor: lower case, markup and punctuation (but - and _) dropped, spaces to hyphens."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def test_readme_internal_links_resolve():
    readme = _readme()
    without_code = re.sub(FENCED, "", readme, flags=re.S | re.M)
    anchors: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.+)$", without_code, re.M):
        anchor, n = _github_anchor(heading), 1
        while anchor in anchors:  # GitHub numbers repeated headings
            anchor = f"{_github_anchor(heading)}-{n}"
            n += 1
        anchors.add(anchor)
    links = set(re.findall(r"\]\(#([^)]+)\)", without_code))
    assert links, "README has no internal links"
    assert not sorted(links - anchors), f"README links to missing sections: {sorted(links - anchors)}"
    files = set(re.findall(r"\]\((?!https?://|#)([^)#]+)\)", without_code))
    missing = sorted(f for f in files if not (ROOT / f).exists())
    assert not missing, f"README links to missing files: {missing}"


def test_readme_architecture_diagram_is_a_mermaid_flowchart():
    """GitHub renders ```mermaid blocks; every label is quoted, so special characters cannot break it."""
    blocks = re.findall(r"^```mermaid\n(.*?)^```", _readme(), re.S | re.M)
    assert blocks, "README has no Mermaid diagram"
    for block in blocks:
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        assert lines[0].startswith("flowchart "), lines[0]
        assert lines.count("end") == sum(line.startswith("subgraph ") for line in lines), "unbalanced subgraph/end"
        for line in lines[1:]:
            # Every node label and edge label is quoted: ["..."], [("...")], |"..."|.
            for label in re.findall(r"\[\(?([^\]]*?)\)?\]|\|([^|]*)\|", line):
                text = label[0] or label[1]
                assert text.startswith('"') and text.endswith('"'), f"unquoted Mermaid label in: {line}"
