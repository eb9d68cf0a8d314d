"""Which code built a model: the library version and, when the build recorded it, the git revision and whether
the working tree had uncommitted changes."""

from __future__ import annotations

from pathlib import Path

from mlops import __version__

BUILD_INFO = Path(__file__).with_name("BUILD_REVISION")


def git_revision() -> str | None:
    """The revision written into the layer at synth time, else the working tree's HEAD when run from a clone."""
    if BUILD_INFO.exists():
        return BUILD_INFO.read_text().strip() or None
    for parent in Path(__file__).resolve().parents:
        head = parent / ".git" / "HEAD"
        if head.is_file():
            ref = head.read_text().strip()
            if ref.startswith("ref: "):
                ref_file = parent / ".git" / ref[5:]
                if ref_file.is_file():
                    return ref_file.read_text().strip()
                packed = parent / ".git" / "packed-refs"
                if packed.is_file():
                    for line in packed.read_text().splitlines():
                        if line.endswith(ref[5:]):
                            return line.split()[0]
                return None
            return ref
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
