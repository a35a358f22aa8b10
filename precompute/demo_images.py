"""The shipped image demo corpus: offline photos plus generated test patterns.

``demo_images()`` returns a deterministic list of ``(label, PIL.Image.Image)`` pairs, all RGB
and at least 224×224 (the model resizes/crops them itself):

* scikit-image sample images that ship inside the scikit-image wheel (nothing is ever
  downloaded: an image whose file is not present locally is left out);
* the two scikit-learn sample photos (``load_sample_images``, also shipped in the wheel);
* synthetic patterns: flat colour fields, stripes at four angles and two frequencies,
  two checkerboards and a colour gradient — inputs where the "right" attention pattern is
  easy to reason about.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

MIN_SIDE = 224   # every demo image is at least this large on its short side
MAX_SIDE = 640   # large photos are scaled down so the long side is at most this
PATTERN_SIZE = 256

# (label, skimage.data loader name, file(s) the loader reads, relative to the skimage package)
_SKIMAGE = [
    ("astronaut (photo)", "astronaut", ["data/astronaut.png"]),
    ("chelsea the cat (photo)", "chelsea", ["data/chelsea.png"]),
    ("coffee cup (photo)", "coffee", ["data/coffee.png"]),
    ("rocket launch (photo)", "rocket", ["data/rocket.jpg"]),
    ("motorcycle (photo)", "stereo_motorcycle",
     ["data/motorcycle_left.png", "data/motorcycle_right.png", "data/motorcycle_disp.npz"]),
    ("hubble deep field (astronomy)", "hubble_deep_field", ["data/hubble_deep_field.jpg"]),
    ("retina (medical)", "retina", ["data/retina.jpg"]),
    ("immunohistochemistry (microscopy)", "immunohistochemistry", ["data/ihc.png"]),
    ("colour wheel", "colorwheel", ["data/color.png"]),
    ("scikit-image logo", "logo", ["data/logo.png"]),
    ("camera man (grey photo)", "camera", ["data/camera.png"]),
    ("coins (grey photo)", "coins", ["data/coins.png"]),
    ("moon surface (grey)", "moon", ["data/moon.png"]),
    ("brick wall (grey texture)", "brick", ["data/brick.png"]),
    ("grass (grey texture)", "grass", ["data/grass.png"]),
    ("gravel (grey texture)", "gravel", ["data/gravel.png"]),
    ("horse silhouette (binary)", "horse", ["data/horse.png"]),
    ("printed page (grey text)", "page", ["data/page.png"]),
    ("handwritten text (grey photo)", "text", ["data/text.png"]),
]

_FLATS = [
    ("flat red", (220, 40, 40)),
    ("flat green", (40, 170, 70)),
    ("flat blue", (40, 80, 210)),
    ("flat yellow", (240, 210, 50)),
    ("flat grey", (128, 128, 128)),
]
_STRIPE_ANGLES = (0, 45, 90, 135)
_STRIPE_CYCLES = (4, 16)          # stripe pairs across the image
_CHECKER_CELLS = (32, 8)          # cell size in pixels (8×8 and 32×32 boards at 256 px)


def _to_rgb_image(arr: np.ndarray) -> Image.Image:
    """Any skimage array (bool, float 0..1, uint8; grey, RGB or RGBA) → RGB PIL image."""
    a = np.asarray(arr)
    if a.dtype == bool:
        a = np.where(a, 255, 0).astype(np.uint8)
    elif a.dtype != np.uint8:
        a = np.clip(np.asarray(a, dtype=np.float64) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.stack([a, a, a], axis=-1)
    elif a.shape[-1] == 4:  # composite RGBA over white
        rgb = a[..., :3].astype(np.float64)
        alpha = a[..., 3:4].astype(np.float64) / 255.0
        a = np.clip(rgb * alpha + 255.0 * (1.0 - alpha) + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(a[..., :3]), mode="RGB")


def _fit(img: Image.Image) -> Image.Image:
    """Scale so the short side is ≥ MIN_SIDE and the long side ≤ MAX_SIDE (where possible)."""
    w, h = img.size
    scale = 1.0
    if max(w, h) > MAX_SIDE:
        scale = MAX_SIDE / max(w, h)
    if min(w, h) * scale < MIN_SIDE:
        scale = MIN_SIDE / min(w, h)
    if scale == 1.0:
        return img
    size = (max(MIN_SIDE, round(w * scale)), max(MIN_SIDE, round(h * scale)))
    return img.resize(size, Image.Resampling.LANCZOS)


def _skimage_images() -> tuple[list[tuple[str, Image.Image]], list[str]]:
    out, missing = [], []
    try:
        import skimage
        import skimage.data as skdata
    except ImportError:  # pragma: no cover - scikit-image is a pinned dependency
        return out, [name for _, name, _ in _SKIMAGE]
    root = Path(skimage.__file__).parent
    for label, name, files in _SKIMAGE:
        # Only call loaders whose files ship with the package: never trigger a download.
        if not all((root / f).is_file() for f in files):
            missing.append(name)
            continue
        try:
            arr = getattr(skdata, name)()
            if isinstance(arr, tuple):  # stereo_motorcycle → (left, right, disparity)
                arr = arr[0]
            out.append((label, _fit(_to_rgb_image(arr))))
        except Exception:  # noqa: BLE001 - optional demo image: a loader that fails is named as missing
            logging.getLogger(__name__).warning("demo image %s could not be loaded", name, exc_info=True)
            missing.append(name)
    return out, missing


def _sklearn_images() -> tuple[list[tuple[str, Image.Image]], list[str]]:
    try:
        from sklearn.datasets import load_sample_images

        data = load_sample_images()
    except Exception:  # noqa: BLE001 - optional demo images: named as missing
        logging.getLogger(__name__).warning("scikit-learn's sample images could not be loaded", exc_info=True)
        return [], ["sklearn sample images"]
    out = []
    for fname, arr in zip(data.filenames, data.images):
        stem = Path(fname).stem  # china, flower
        out.append((f"{stem} (scikit-learn photo)", _fit(_to_rgb_image(arr))))
    return out, []


def _flat(rgb: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", (PATTERN_SIZE, PATTERN_SIZE), rgb)


def _stripes(angle_deg: int, cycles: int) -> Image.Image:
    """Black/white square-wave stripes; ``angle_deg`` is the direction the pattern varies
    along (0° → vertical stripes varying left to right, 90° → horizontal stripes)."""
    n = PATTERN_SIZE
    y, x = np.mgrid[0:n, 0:n].astype(np.float64) + 0.5
    t = np.deg2rad(angle_deg)
    u = x * np.cos(t) + y * np.sin(t)
    phase = np.floor(u * (2 * cycles) / n).astype(np.int64)
    a = np.where(phase % 2 == 0, 255, 0).astype(np.uint8)
    return _to_rgb_image(a)


def _checkerboard(cell: int) -> Image.Image:
    n = PATTERN_SIZE
    y, x = np.mgrid[0:n, 0:n]
    a = np.where(((x // cell) + (y // cell)) % 2 == 0, 255, 0).astype(np.uint8)
    return _to_rgb_image(a)


def _gradient() -> Image.Image:
    """Red increases left→right, green top→bottom, blue falls along the diagonal."""
    n = PATTERN_SIZE
    y, x = np.mgrid[0:n, 0:n].astype(np.float64) / (n - 1)
    a = np.stack([x, y, 1.0 - (x + y) / 2.0], axis=-1)
    return _to_rgb_image(a)


def _patterns() -> list[tuple[str, Image.Image]]:
    out: list[tuple[str, Image.Image]] = [(label, _flat(rgb)) for label, rgb in _FLATS]
    for cycles in _STRIPE_CYCLES:
        for angle in _STRIPE_ANGLES:
            out.append((f"stripes {angle}°, {cycles} cycles", _stripes(angle, cycles)))
    for cell in _CHECKER_CELLS:
        k = PATTERN_SIZE // cell
        out.append((f"checkerboard {k}×{k} ({cell} px cells)", _checkerboard(cell)))
    out.append(("colour gradient", _gradient()))
    return out


def demo_images_with_missing() -> tuple[list[tuple[str, Image.Image]], list[str]]:
    """Like :func:`demo_images`, plus the names of sample images left out because they are
    not available offline in this installation (normally an empty list)."""
    sk, sk_missing = _skimage_images()
    sl, sl_missing = _sklearn_images()
    return sk + sl + _patterns(), sk_missing + sl_missing


def demo_images() -> list[tuple[str, Image.Image]]:
    """The demo image corpus: a deterministic list of ``(label, RGB PIL image)``."""
    return demo_images_with_missing()[0]


__all__ = ["demo_images", "demo_images_with_missing", "MIN_SIDE", "MAX_SIDE"]
