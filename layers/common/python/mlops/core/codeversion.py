"""Which code built a model: the library version and, when the build recorded it, the git revision and whether
the working tree had uncommitted changes."""

from __future__ import annotations

from pathlib import Path

from mlops import __version__

BUILD_INFO = Path(__file__).with_name("BUILD_REVISION")


def _git_dirs(parent: Path) -> tuple[Path, Path] | None:
    """(git dir, common dir) of a clone rooted at `parent`: `.git` is a folder in a clone, a `gitdir:` file in a
    `git worktree` (whose refs live in the main clone's folder, named by its `commondir` file)."""
    dot_git = parent / ".git"
    if dot_git.is_dir():
        return dot_git, dot_git
    if dot_git.is_file():
        text = dot_git.read_text().strip()
        if text.startswith("gitdir: "):
            git_dir = (parent / text[8:]).resolve()
            common = git_dir / "commondir"
            return git_dir, ((git_dir / common.read_text().strip()).resolve() if common.is_file() else git_dir)
    return None


def git_revision(start: Path | None = None) -> str | None:
    """The revision written into the layer at synth time, else the HEAD of the clone (or `git worktree`) that
    holds `start` (default: this module)."""
    if BUILD_INFO.exists():
        return BUILD_INFO.read_text().strip() or None
    for parent in (start or Path(__file__)).resolve().parents:
        dirs = _git_dirs(parent)
        if dirs is None or not (dirs[0] / "HEAD").is_file():
            continue
        git_dir, common = dirs
        ref = (git_dir / "HEAD").read_text().strip()
        if not ref.startswith("ref: "):
            return ref
        name = ref[5:]
        for folder in (git_dir, common):
            if (folder / name).is_file():
                return (folder / name).read_text().strip()
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                if line.endswith(name):
                    return line.split()[0]
        return None
    return None


def package_version() -> str:
    return __version__


DIRTY_SUFFIX = "-dirty"


def revision_and_dirty(recorded: str = "") -> tuple[str | None, bool | None]:
    """The code revision and whether the working tree had uncommitted changes to tracked files.

    `recorded` is what the deploy put in the function's settings (`<sha>` or `<sha>-dirty`, the suffix as
    `git describe --dirty` writes it); without it, the clone this module runs from (None: not knowable)."""
    if recorded:
        if recorded.endswith(DIRTY_SUFFIX):
            return recorded[: -len(DIRTY_SUFFIX)], True
        return recorded, False
    revision = git_revision()
    return revision, (working_tree_dirty() if revision else None)


def working_tree_dirty(root: Path | None = None) -> bool | None:
    """Whether tracked files differ from HEAD (`git status --porcelain --untracked-files=no`); None without git
    or outside a clone."""
    import subprocess

    folder = root or Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=folder,
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None
