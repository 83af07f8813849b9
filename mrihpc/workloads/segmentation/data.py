"""The ACDC-derived PNG layout: reading, checking and serving image / label pairs.

    <root>/train/image/cmr1.png   <root>/train/mask/cmr1_mask.png
    <root>/val/image/...          <root>/val/mask/...
    <root>/test/image/...         (no masks)

Pairs are matched by name (never by listing order). Torch-free: the login node runs the same
checks before submitting, and samples are numpy arrays that the DataLoader collates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
from scipy import ndimage
from skimage.io import imread

from mrihpc.data import DataError, check_data_file

MASK_SUFFIX = "_mask.png"


@dataclass(frozen=True)
class Pair:
    stem: str
    image: Path
    mask: Optional[Path]


def root_of(data) -> Path:
    """The dataset folder, generating the synthetic one into the cache on first use."""
    if data.synthetic is not None:
        from mrihpc.workloads.segmentation.synth import ensure_synthetic

        return ensure_synthetic(data.synthetic)
    return Path(data.root)


def scan(root: Path, split: str, with_masks: bool) -> list[Pair]:
    """The sorted image / mask pairs of one split; DataError names every unpaired file."""
    image_dir, mask_dir = root / split / "image", root / split / "mask"
    images = sorted(image_dir.glob("*.png")) if image_dir.is_dir() else []
    for path in images + (
        sorted(mask_dir.glob("*.png")) if with_masks and mask_dir.is_dir() else []
    ):
        check_data_file(path, "PNG files")
    if not images:
        raise DataError(f"{image_dir}: no *.png images (expected {split}/image/<stem>.png)")
    if not with_masks:
        return [Pair(p.stem, p, None) for p in images]
    if not mask_dir.is_dir():
        raise DataError(
            f"{mask_dir}: missing; the {split} split is used for "
            f"{'training' if split == 'train' else 'validation'} "
            f"and needs a mask per image ({split}/mask/<stem>{MASK_SUFFIX})"
        )
    masks = {p.name: p for p in mask_dir.glob("*.png")}
    wanted = {f"{p.stem}{MASK_SUFFIX}" for p in images}
    problems = [
        f"{mask_dir / f'{p.stem}{MASK_SUFFIX}'}: no mask for image {p}"
        for p in images
        if f"{p.stem}{MASK_SUFFIX}" not in masks
    ]
    problems += [
        f"{path}: mask without an image (expected {image_dir / name.removesuffix(MASK_SUFFIX)}.png)"
        for name, path in sorted(masks.items())
        if name not in wanted
    ]
    if problems:
        raise DataError("\n".join(problems))
    return [Pair(p.stem, p, masks[f"{p.stem}{MASK_SUFFIX}"]) for p in images]


def read_image(path: Path) -> np.ndarray:
    """A grayscale PNG as float32 ``(H, W)`` in its stored range, and the dtype's maximum."""
    try:
        image = imread(path)
    except Exception as e:  # noqa: BLE001 - any decoder error is a bad file
        raise DataError(f"{path}: not a readable PNG ({type(e).__name__}: {e})") from None
    if image.ndim == 3 and image.shape[2] in (3, 4) and np.all(image[..., :3] == image[..., :1]):
        image = image[..., 0]  # grey stored as RGB(A)
    if image.ndim != 2:
        raise DataError(f"{path}: shape {image.shape}; allowed: a grayscale image (H, W)")
    return image


def labels_of(
    mask: np.ndarray, path: Path, num_classes: int, encoding: str
) -> tuple[np.ndarray, str]:
    """Mask values -> class indices ``(H, W)`` int64, and the encoding found (index or scaled)."""
    values = set(np.unique(mask).tolist())
    scaled = {round(k * 255 / (num_classes - 1)): k for k in range(num_classes)}
    if encoding in ("auto", "index") and values <= set(range(num_classes)):
        return mask.astype(np.int64), "index"
    if encoding in ("auto", "scaled") and values <= set(scaled):
        return np.vectorize(scaled.get, otypes=[np.int64])(mask), "scaled"
    allowed = (
        f"0..{num_classes - 1}"
        if encoding == "index"
        else sorted(scaled)
        if encoding == "scaled"
        else f"0..{num_classes - 1} or {sorted(scaled)}"
    )
    raise DataError(
        f"{path}: mask values {sorted(values)[:10]} outside the {num_classes} classes; "
        f"allowed: {allowed}"
    )


def check_folders(data) -> list[str]:
    """Read every training and validation pair (and test image) as training will; DataError on
    the first split with problems. Returns notes (e.g. a mask encoding that was mapped)."""
    root, notes = Path(data.root), []
    if not root.is_dir():
        raise DataError(f"{root}: folder does not exist")
    for split in ("train", "val"):
        notes += PngSegmentation(scan(root, split, True), data, train=False).notes
    if (root / "test" / "image").is_dir():
        PngSegmentation(scan(root, "test", False), data, train=False)
    return notes


class PngSegmentation:
    """Pairs held in memory (ACDC's PNGs are small). Item ``i``: ``input`` float32 ``(1, H, W)``,
    ``label`` int64 ``(H, W)`` (absent for test images), ``name`` the stem."""

    def __init__(self, pairs: list[Pair], data, train: bool, seed: int = 0):
        self.pairs, self.train, self.seed, self.epoch = pairs, train, seed, 0
        self.normalize, self.augment = data.normalize, data.augment if train else None
        self.images, self.labels, encodings = [], [], set()
        for pair in pairs:
            image = read_image(pair.image)
            if image.dtype not in (np.uint8, np.uint16):  # a 1-bit PNG is a mask, not an image
                raise DataError(
                    f"{pair.image}: {image.dtype} pixels; allowed: 8- or 16-bit grayscale "
                    "(uint8, uint16)"
                )
            if (
                image.min() == image.max()
            ):  # nothing to segment; "instance" scaling would divide by ~0
                raise DataError(
                    f"{pair.image}: every pixel is {image.min()}; allowed: an image with contrast"
                )
            self.images.append(image)
            if pair.mask is not None:
                mask = read_image(pair.mask)
                if mask.shape != image.shape:
                    raise DataError(
                        f"{pair.mask}: size {mask.shape} differs from its image "
                        f"{pair.image} {image.shape}"
                    )
                labels, found = labels_of(mask, pair.mask, len(data.classes), data.mask_values)
                self.labels.append(labels)
                encodings.add(found)
        first = self.images[0].shape
        for pair, image in zip(pairs, self.images):
            if image.shape != first:
                raise DataError(
                    f"{pair.image}: size {image.shape} differs from {pairs[0].image} {first}; "
                    "all images must have one size"
                )
        self.peak = (
            float(np.iinfo(self.images[0].dtype).max) if self.images[0].dtype.kind in "ui" else 1.0
        )
        top = len(data.classes) - 1
        self.notes = (
            [
                f"{pairs[0].mask.parent}: masks stored as "
                f"{sorted(round(k * 255 / top) for k in range(top + 1))}; mapped to 0..{top}"
            ]
            if "scaled" in encodings
            else []
        )

    def __len__(self) -> int:
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def volumes_index(self) -> list[list[int]]:
        """Each image is its own 'volume': validation scores every image, then averages."""
        return [[i] for i in range(len(self))]

    def _scaled(self, image: np.ndarray) -> np.ndarray:
        image = image.astype(np.float32)
        if self.normalize == "unit":
            return image / self.peak
        if self.normalize == "instance":
            return (image - image.mean()) / max(float(image.std()), 1e-6)
        return image

    def __getitem__(self, i: int) -> dict:
        image = self._scaled(self.images[i])
        label = self.labels[i] if self.labels else None
        if self.augment is not None:
            image, label = self._augmented(
                image, label, np.random.default_rng([self.seed, self.epoch, i])
            )
        item = {"input": np.ascontiguousarray(image[None]), "name": self.pairs[i].stem}
        if label is not None:
            item["label"] = np.ascontiguousarray(label)
        return item

    def _augmented(self, image: np.ndarray, label: np.ndarray, rng: np.random.Generator):
        """The same rotation and flips for both; bilinear for the image, nearest for the label."""
        a = self.augment
        angle = rng.uniform(-a.rotate_deg, a.rotate_deg)
        if angle:
            image = ndimage.rotate(image, angle, reshape=False, order=1, mode="nearest")
            label = ndimage.rotate(label, angle, reshape=False, order=0, mode="nearest")
        if rng.random() < a.flip_lr:
            image, label = image[:, ::-1], label[:, ::-1]
        if rng.random() < a.flip_ud:
            image, label = image[::-1], label[::-1]
        return image, label
