"""The code revision recorded in lineage is found from a `git worktree` too (`.git` is a `gitdir:` file there)."""

from __future__ import annotations

from pathlib import Path

from mlops.core.codeversion import git_revision

SHA = "0123456789abcdef0123456789abcdef01234567"


def _worktree(tmp_path: Path, packed: bool) -> Path:
    common = tmp_path / "main" / ".git"
    (common / "worktrees" / "wt").mkdir(parents=True)
    (common / "worktrees" / "wt" / "HEAD").write_text("ref: refs/heads/fix-tools\n")
    (common / "worktrees" / "wt" / "commondir").write_text("../..\n")
    if packed:
        (common / "packed-refs").write_text(f"# pack-refs with: peeled\n{SHA} refs/heads/fix-tools\n")
    else:
        (common / "refs" / "heads").mkdir(parents=True)
        (common / "refs" / "heads" / "fix-tools").write_text(SHA + "\n")
    tree = tmp_path / "wt"
    (tree / "src").mkdir(parents=True)
    (tree / ".git").write_text(f"gitdir: {common / 'worktrees' / 'wt'}\n")
    return tree / "src" / "module.py"


def test_revision_of_a_worktree_is_read_from_the_main_clones_refs(tmp_path):
    assert git_revision(_worktree(tmp_path, packed=False)) == SHA


def test_revision_of_a_worktree_is_read_from_packed_refs(tmp_path):
    assert git_revision(_worktree(tmp_path, packed=True)) == SHA


def test_revision_of_a_detached_clone_is_its_head(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text(SHA + "\n")
    assert git_revision(tmp_path / "module.py") == SHA
