"""Files a failure leaves for people to look at: the expected, obtained and difference images,
and a failed notebook as it ran, one folder per item under ``dsrepro_artifacts``."""

from __future__ import annotations

import shutil
from pathlib import Path

from pytest_dsrepro.baselines.store import safe_name, shown

KEPT = "obtained.yaml"  # what a failed item obtained, as a baseline, for dsrepro accept


def extension(data: bytes) -> str:
    """``png``, ``jpg`` or ``bin``, from the data's first bytes."""
    if data.startswith(b"\x89PNG"):
        return "png"
    if data.startswith(b"\xff\xd8"):
        return "jpg"
    return "bin"


class Artifacts:
    """The artifacts folder of one item; cleared when the item is compared again."""

    def __init__(self, root: Path, rootdir: Path, nodeid: str) -> None:
        self.root = root
        self.rootdir = rootdir
        self.folder = root / safe_name(nodeid.replace("/", "__").replace("::", "--"))

    @property
    def kept(self) -> Path:
        """Where a failed comparison keeps what the item obtained, for ``dsrepro accept``."""
        return self.folder / KEPT

    def clear(self) -> None:
        """Drop what an earlier failure of this item left. The root folder stays: another
        process of this run (an xdist worker) may be about to mount it into a container; the
        session removes it at its end if it is empty."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def write(self, label: str, images: dict[str, bytes]) -> dict[str, str]:
        """Write ``{"expected": png, ...}`` as ``<label>-expected.png`` and so on; return each
        file's path relative to the rootdir."""
        self.folder.mkdir(parents=True, exist_ok=True)
        written: dict[str, str] = {}
        for kind, data in images.items():
            path = self.folder / f"{safe_name(label)}-{kind}.{extension(data)}"
            path.write_bytes(data)
            written[kind] = shown(path, self.rootdir)
        return written

    def write_file(self, name: str, data: bytes) -> str:
        """Write one file into the item's folder; its path relative to the rootdir."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / name
        path.write_bytes(data)
        return shown(path, self.rootdir)


def remove_if_empty(folder: Path) -> None:
    """Remove ``folder`` if it is an empty folder; otherwise leave it."""
    try:
        folder.rmdir()
    except OSError:  # absent, not empty, or a mount point
        pass
