"""Image preprocessing and batching shared by the vision adapters: resize, centre crop, normalise."""
from __future__ import annotations

import numpy as np
import torch

from precompute.models.base import Encoded, ModelAdapter, ModelInfo

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def square_crop(image, size: int) -> np.ndarray:
    """Resize the shorter side to ``size`` (bicubic) and centre-crop to size×size; uint8 H×W×3."""
    from PIL import Image

    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image))
    image = image.convert("RGB")
    w, h = image.size
    ratio = size / min(w, h)
    new_w, new_h = max(size, round(w * ratio)), max(size, round(h * ratio))
    image = image.resize((new_w, new_h), Image.BICUBIC)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


def token_labels(grid: tuple[int, int], prefix: list[str]) -> list[str]:
    """Display strings: prefix tokens (CLS, registers…) then "patch r,c" in row-major order."""
    return prefix + [f"patch {r},{c}" for r in range(grid[0]) for c in range(grid[1])]


def preprocess_images(images: list, size: int, mean, std, grid: tuple[int, int],
                      prefix: list[str]) -> list[Encoded]:
    """Encode PIL images (or H×W×3 arrays) for a ViT reading ``size``-px squares;
    ``prefix`` labels the tokens before the patch grid (CLS, registers…)."""
    labels = token_labels(grid, prefix)
    mean_t = torch.tensor(mean, dtype=torch.float32)[:, None, None]
    std_t = torch.tensor(std, dtype=torch.float32)[:, None, None]
    out = []
    for image in images:
        rgb = square_crop(image, size)
        pixels = (torch.from_numpy(rgb.copy()).permute(2, 0, 1).float() / 255.0 - mean_t) / std_t
        out.append(Encoded(tokens=list(labels), token_ids=[-1] * len(labels), truncated=0,
                           pixel_values=pixels, patch_grid=grid, n_prefix=len(prefix), display_image=rgb))
    return out


class ImageAdapter(ModelAdapter):
    """Vision model reading fixed-size squares: every input has the same length, no padding."""

    def __init__(self, model, info: ModelInfo, image_size: int, grid: tuple[int, int], prefix: list[str],
                 mean, std, device: str = "cpu"):
        super().__init__(model, info, device)
        self.image_size, self.grid, self.prefix = image_size, tuple(grid), list(prefix)
        self.mean, self.std = tuple(mean), tuple(std)

    def encode_images(self, images: list) -> list[Encoded]:
        return preprocess_images(images, self.image_size, self.mean, self.std, self.grid, self.prefix)

    def _inputs(self, batch: list[Encoded]) -> tuple[dict, list[int]]:
        if not batch:
            raise ValueError("empty batch")
        pixels = torch.stack([torch.as_tensor(e.pixel_values, dtype=torch.float32) for e in batch])
        return {"pixel_values": pixels.to(self.device)}, [len(e.tokens) for e in batch]
