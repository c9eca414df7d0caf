"""Where evaluation images come from before they become shards.

Two ImageNet validation layouts are understood: an ImageFolder (one sub-folder per class, classes
indexed in sorted order) and the flat ``ILSVRC2012_val_*.JPEG`` folder with a labels file (one
integer per line, in file-name order). Samples come out in a fixed order and are keyed by their
position (``00000000``, ``00000001``, ...): stable, sortable, and free of the dots webdataset uses
to split keys from extensions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cluster.errors import InputError
from cluster.userfiles import MIB, read_text_bounded
from cluster.validate import MAX_CLASSES, integer

# ImageNet-21k's 14 million labels take about 80 MB written one per line.
MAX_LABELS_BYTES = 256 * MIB

IMAGE_SUFFIXES = {".jpeg", ".jpg"}


class SourceError(InputError):
    """The source folder is not in a layout saverzoo understands; the message says why."""


@dataclass(frozen=True)
class SourceImage:
    key: str
    path: Path
    filename: str  # as the source names it, relative to the source folder
    label: int


@dataclass(frozen=True)
class Source:
    images: list[SourceImage]
    num_classes: int
    label_source: str


def sample_key(index: int) -> str:
    return f"{index:08d}"


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def image_folder(root: Path) -> Source:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    images: list[SourceImage] = []
    for label, name in enumerate(classes):
        for path in _images_in(root / name):
            images.append(SourceImage(sample_key(len(images)), path, f"{name}/{path.name}", label))
    if not images:
        raise SourceError(f"{root} has class folders but no .JPEG/.jpg files in them")
    return Source(images, len(classes), f"imagefolder:{root}")


def _label(text: str, labels_file: Path, number: int) -> int:
    """One line of a labels file as a class index in 0..MAX_CLASSES-1, or an error naming it."""
    try:
        value = int(text, 10) if text.lstrip("+-").isascii() else None
    except ValueError:  # not a number, or one of thousands of digits
        value = None
    if value is None or "_" in text:
        raise SourceError(
            f"{labels_file} line {number} is not an integer label; write one class index "
            f"(0..{MAX_CLASSES - 1}) per line"
        )
    return integer(value, f"{labels_file} line {number}: label", 0, MAX_CLASSES - 1)


def read_labels(labels_file: Path) -> list[int]:
    """The labels of a labels file, in order; blank lines are skipped, numbers name the line."""
    try:
        text = read_text_bounded(labels_file, "--labels", MAX_LABELS_BYTES)
    except InputError as error:
        raise SourceError(str(error)) from None
    return [
        _label(line.strip(), labels_file, number)
        for number, line in enumerate(text.splitlines(), start=1)
        if line.strip()
    ]


def flat_with_labels(root: Path, labels_file: Path) -> Source:
    paths = _images_in(root)
    labels = read_labels(labels_file)
    if not paths:
        raise SourceError(f"{root} has no .JPEG/.jpg files")
    if len(labels) != len(paths):
        raise SourceError(
            f"{labels_file} has {len(labels)} labels but {root} has {len(paths)} images; "
            "there must be one label per image, in file-name order"
        )
    images = [
        SourceImage(sample_key(i), path, path.name, label)
        for i, (path, label) in enumerate(zip(paths, labels, strict=True))
    ]
    return Source(images, max(labels) + 1, f"labels-file:{labels_file}")


def tar_files(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix == ".tar")


def find_source(root: Path, labels_file: Path | None = None) -> Source:
    """The images of an ImageFolder or of a flat folder with ``labels_file``."""
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"{root} is not a folder")
    if labels_file is not None:
        return flat_with_labels(root, Path(labels_file))
    if any(p.is_dir() for p in root.iterdir()):
        return image_folder(root)
    if _images_in(root):
        raise SourceError(
            f"{root} is a flat folder of images: give their labels with --labels FILE "
            "(one integer per line, in file-name order)"
        )
    raise SourceError(
        f"{root} has neither class sub-folders, nor images with --labels, nor .tar shards"
    )
