"""Issue 8: evaluating the program never writes to the working tree (no `.pulumi-ca/`, nothing else)."""

import hashlib
import os
import sys
from pathlib import Path

import pytest

from tests.stacks import DEFAULT_STACKS, MODE_STACKS
from tools.mock_engine import evaluate, evaluate_stack

ROOT = Path(__file__).resolve().parent.parent
# Environments and caches that tools (not the program) write to.
IGNORED = {".git", "build", "__pycache__", ".pytest_cache"}


def ignored(directory: str) -> bool:
    return directory in IGNORED or directory.startswith(("venv", ".venv"))


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under root (symlinks by their target), outside the ignored directories."""
    hashes = {}
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = [d for d in subdirectories if not ignored(d)]
        for name in files:
            path = Path(directory) / name
            key = str(path.relative_to(root))
            hashes[key] = (
                ("-> " + os.readlink(path)) if path.is_symlink() else hashlib.sha256(path.read_bytes()).hexdigest()
            )
    return hashes


_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_writes: list = []  # (event, path) of this process while recording; None when not recording


def _audit(event: str, args: tuple) -> None:
    if _writes and _writes[0] is None:
        return
    if event == "open":
        path, mode, flags = args
        writing = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS
        )
    else:
        path, writing = args[0], True
    if writing and isinstance(path, (str, bytes, os.PathLike)):
        _writes.append((event, os.fsdecode(path)))


_writes.append(None)
sys.addaudithook(
    lambda event, args: (
        _audit(event, args)
        if event
        in (
            "open",
            "os.mkdir",
            "os.rename",
            "os.remove",
            "os.rmdir",
            "os.symlink",
            "os.truncate",
            "shutil.rmtree",
            "subprocess.Popen",
        )
        else None
    )
)


def writes_during(run) -> list:
    """Files this process opened for writing (or created, moved, removed) or processes it started while `run` ran."""
    _writes.clear()
    try:
        run()
        return list(_writes)
    finally:
        _writes[:] = [None]


STACKS = [(stack, {}) for stack in DEFAULT_STACKS] + list(MODE_STACKS.values())


@pytest.mark.parametrize("stack, config", STACKS, ids=list(DEFAULT_STACKS) + list(MODE_STACKS))
@pytest.mark.parametrize("preview", [False, True], ids=["up", "preview"])
def test_evaluating_a_stack_leaves_the_working_tree_unchanged(stack, config, preview):
    before = snapshot(ROOT)
    assert "__main__.py" in before and "tests/fixtures/external-ca.pem" in before
    assert not any(path.startswith(("venv/", ".git/")) for path in before)
    written = writes_during(lambda: evaluate_stack(stack, config, preview=preview))
    assert [(event, path) for event, path in written if event == "subprocess.Popen" or path.startswith(str(ROOT))] == []
    assert snapshot(ROOT) == before
    assert not (ROOT / ".pulumi-ca").exists()


def test_the_snapshot_sees_a_program_that_writes(tmp_path):
    (tmp_path / "kept.txt").write_text("unchanged")
    (tmp_path / "venv").mkdir()
    (tmp_path / "venv" / "ignored.txt").write_text("tools write here")
    before = snapshot(tmp_path)
    assert set(before) == {"kept.txt"}

    def writes():
        (tmp_path / ".pulumi-ca" / "dev").mkdir(parents=True)
        (tmp_path / ".pulumi-ca" / "dev" / "postgres-ca.crt").write_text("CA")

    written = writes_during(lambda: evaluate(writes))
    assert ("open", str(tmp_path / ".pulumi-ca" / "dev" / "postgres-ca.crt")) in written
    assert set(snapshot(tmp_path)) - set(before) == {".pulumi-ca/dev/postgres-ca.crt"}
    (tmp_path / "kept.txt").write_text("changed")
    assert snapshot(tmp_path)["kept.txt"] != before["kept.txt"]
