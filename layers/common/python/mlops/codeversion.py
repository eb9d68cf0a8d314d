"""Which code built a model: the library version and, when the build recorded it, the git revision."""

from __future__ import annotations

from pathlib import Path

from . import __version__

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
