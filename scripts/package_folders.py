"""Real image folders that ship inside a package, written as a user's ImageFolder (issue 30).

    python scripts/package_folders.py OUT [--sets lfw textures photos]

scikit-image's wheel carries its sample data (``skimage/data``), so these need no
network at run time:

* ``lfw``: ``lfw_subset.npy`` — 100 faces and 100 non-faces from Labeled Faces in the
  Wild, 25 x 25 grey: a 2-class grey set at a size other than 28 px.
* ``textures``: ``brick.png``, ``grass.png``, ``gravel.png`` (512 x 512 grey photos of
  three surfaces) cut into non-overlapping 64 px patches, one class per surface: a
  3-class grey texture set of 64 px images.
* ``photos``: the RGB photos (astronaut, chelsea, coffee, hubble_deep_field, ihc,
  motorcycle_left, retina, rocket) cut into non-overlapping 64 px patches, one class per
  photo: an 8-class RGB set of 64 px images, imbalanced as the photos' sizes are
  (a large retina scan gives hundreds of patches, the cat a few dozen).

They are small and their classes are easy; they test that genaug serves a folder of
another size and mode end to end, not that a generator helps on them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

TEXTURES = ("brick", "grass", "gravel")
PHOTOS = ("astronaut", "chelsea", "coffee", "hubble_deep_field", "ihc", "motorcycle_left", "retina", "rocket")


def skimage_data() -> Path:
    import skimage

    return Path(skimage.__file__).parent / "data"


def _open(name: str) -> Image.Image:
    folder = skimage_data()
    path = next(p for ext in (".png", ".jpg") if (p := folder / f"{name}{ext}").is_file())
    return Image.open(path)


def _patches(img: Image.Image, size: int) -> list[Image.Image]:
    w, h = img.size
    return [img.crop((x, y, x + size, y + size)) for y in range(0, h - size + 1, size) for x in range(0, w - size + 1, size)]


def write_lfw(out: Path) -> int:
    faces = np.load(skimage_data() / "lfw_subset.npy")  # (200, 25, 25) float in [0, 1]: 100 faces, then 100 non-faces
    for i, arr in enumerate(faces):
        folder = out / ("face" if i < 100 else "not_face")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray((np.clip(arr, 0, 1) * 255).round().astype(np.uint8), mode="L").save(folder / f"{i:03d}.png")
    return len(faces)


def write_patches(out: Path, names: tuple[str, ...], size: int = 64, mode: str | None = None) -> int:
    n = 0
    for name in names:
        img = _open(name)
        img = img.convert(mode or ("RGB" if img.mode not in ("L", "I;16") else "L"))
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, patch in enumerate(_patches(img, size)):
            patch.save(folder / f"{i:04d}.png")
            n += 1
    return n


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--sets", nargs="+", default=["lfw", "textures", "photos"], choices=["lfw", "textures", "photos"])
    args = ap.parse_args(argv)
    out = Path(args.out)
    writers = {"lfw": write_lfw, "textures": lambda o: write_patches(o, TEXTURES, mode="L"),
               "photos": lambda o: write_patches(o, PHOTOS, mode="RGB")}
    for name in args.sets:
        print(f"{name}: {writers[name](out / name)} images in {out / name}")


if __name__ == "__main__":
    main()
