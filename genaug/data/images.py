"""Image decoding and the one resize function every data source goes through.

``to_array`` turns any PIL image into a uint8 ``(H, W, C)`` array with C = 1 or 3:

* mode conversion: palette and alpha images are composited onto white; CMYK, YCbCr,
  LAB, HSV become RGB; 16-bit and float grayscale are rescaled to 0-255 (not clipped);
  grayscale becomes RGB by channel replication and RGB becomes grayscale with PIL's
  ITU-R 601-2 luma transform;
* geometry (:func:`resize_square`): the shorter side is resized to ``size`` with
  Lanczos filtering (antialiased when shrinking), then the centre ``size x size``
  square is cropped. Square images are therefore only resized.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"}

# A decompression-bomb guard: larger images are refused before decoding.
MAX_PIXELS = 12_000 * 12_000


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def resize_square(img: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` (Lanczos) and centre-crop a square."""
    w, h = img.size
    if (w, h) == (size, size):
        return img
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.Resampling.LANCZOS, reducing_gap=3.0)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def _flatten_alpha(img: Image.Image) -> Image.Image:
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _high_depth_gray(img: Image.Image) -> Image.Image:
    arr = np.asarray(img, dtype=np.float64)
    if img.mode.startswith("I;16"):
        hi = 65535.0
    else:  # "I" (int32) or "F": scale by the observed range
        hi = float(arr.max()) if arr.size and arr.max() > 255 else 255.0
    return Image.fromarray(np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8), mode="L")


def normalise_mode(img: Image.Image, channels: int) -> Image.Image:
    """Convert to ``L`` (channels=1) or ``RGB`` (channels=3), see module docstring."""
    if img.mode in ("I", "F") or img.mode.startswith("I;16"):
        img = _high_depth_gray(img)
    elif img.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = _flatten_alpha(img)
    elif img.mode not in ("L", "RGB"):
        img = img.convert("RGB")
    target = "L" if channels == 1 else "RGB"
    return img if img.mode == target else img.convert(target)


def to_array(img: Image.Image, *, channels: int, size: int) -> np.ndarray:
    """PIL image -> uint8 array ``(size, size, channels)``."""
    img = resize_square(normalise_mode(img, channels), size)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[:, :, None] if arr.ndim == 2 else arr


def open_image(path: Path) -> Image.Image:
    """Open and fully decode an image; raises ``OSError``/``ValueError`` when unreadable."""
    with Image.open(path) as img:
        if img.width * img.height > MAX_PIXELS:
            raise ValueError(f"image is {img.width}x{img.height}, above the {MAX_PIXELS} pixel limit")
        img.draft(img.mode, (1024, 1024))  # JPEG: decode at reduced scale when huge
        img.load()
        return img.copy()


def array_to_pil(arr: np.ndarray) -> Image.Image:
    """uint8 ``(H, W, C)`` -> PIL image (L or RGB)."""
    return Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
