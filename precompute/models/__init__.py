"""Model adapters, dispatched on modality — not on architecture.

``load_model(spec)`` accepts a built-in name (see ``BUILTIN_MODELS``), a local transformers
folder, a model id already in the local Hugging Face cache (offline), or ``timm:<folder or file>``.
Every transformers architecture whose attention goes through the attention registry is captured by
the one registered function in capture.py: text (hf.py), images (vit_hf.py), encoder–decoder text
(seq2seq.py). Adding such an architecture needs no new file; the others are refused in one line
(hf.REFUSED names why).
"""
from __future__ import annotations

import logging
from pathlib import Path

from precompute.models import hf, vit_hf
from precompute.models.base import Encoded, ModelAdapter, ModelInfo, ModelLoadError, first_line
from precompute.models.packaged import DISPLAY_NAMES, PACKAGES, builtin_folder

__all__ = ["BUILTIN_MODELS", "Encoded", "ModelAdapter", "ModelInfo", "ModelLoadError", "load_model",
           "remote_code_keys", "remote_code_message", "supported_families"]

REMOTE_CODE_KEYS = ("auto_map", "trust_remote_code", "custom_pipelines")


def remote_code_keys(obj) -> list[str]:
    """The keys of a config.json that ask for code shipped with the model (nested ones included)."""
    found: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in REMOTE_CODE_KEYS and v and k not in found:
                found.append(k)
            if isinstance(v, (dict, list)):
                found += [x for x in remote_code_keys(v) if x not in found]
    elif isinstance(obj, list):
        for v in obj:
            found += [x for x in remote_code_keys(v) if x not in found]
    return found


def remote_code_message(folder_name: str, keys: list[str], refused: bool) -> str:
    """The one sentence both the command line and the Runs page use about a model's remote code."""
    what = f"model folder {folder_name} asks for remote code ({' / '.join(keys)} in config.json)"
    if refused:
        return (f"{what}: refused; Attention Atlas never runs code shipped with a model (the command line "
                "would load it with its own code for the architecture, ignoring that request)")
    return (f"{what}: ignored; Attention Atlas never runs code shipped with a model and loads it with its "
            "own code for the architecture (model_type)")

BUILTIN_MODELS: dict[str, str] = {name: desc for name, (_, _, desc) in PACKAGES.items()}


def supported_families() -> str:
    """One line naming what is supported."""
    return ("transformers text, vision and encoder-decoder models whose attention goes through the attention "
            "registry (bert, gpt2, llama, mistral, gemma, modernbert, vit, dinov2, clip, bart …); "
            "vit-timm (timm:<folder or file>)")


def load_model(spec: str, device: str = "cpu") -> ModelAdapter:
    """Load a model by built-in name, local folder, cached HF model id, or ``timm:<path>``."""
    spec = str(spec).strip()
    _check_device(device)
    if spec.startswith("timm:"):
        from precompute.models import vit_timm

        return vit_timm.load(spec[len("timm:"):], device)
    if spec in PACKAGES:
        folder, identity = builtin_folder(spec)
        return _load_folder(str(folder), device, name=DISPLAY_NAMES[spec], identity=identity)
    return _load_folder(_resolve_folder(spec), device)


def _check_device(device: str) -> None:
    """Fail early, in one line, when the requested accelerator is absent."""
    import torch

    kind = str(device).split(":")[0]
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()}
    if not available.get(kind, False):
        raise ModelLoadError(f"device {device!r} is not available here: use cpu"
                             + ("" if kind in available else " (supported: cpu, cuda, mps)"))


def _resolve_folder(spec: str) -> str:
    """A local folder for ``spec``: the path itself, or the snapshot of a cached HF model id."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if path.exists():
        raise ModelLoadError(f"{spec} is a file, not a model folder: give the folder holding config.json "
                             "(for a timm weight file use timm:<file>)")
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        try:
            from huggingface_hub import snapshot_download

            return snapshot_download(spec, local_files_only=True)
        except Exception:  # noqa: BLE001 - optional probe of the local HF cache: any failure means not available offline
            logging.getLogger(__name__).debug("%s is not in the local Hugging Face cache", spec, exc_info=True)
    raise ModelLoadError(f"model {spec!r} not found: give a built-in name ({', '.join(BUILTIN_MODELS)}), "
                         "an existing local model folder, a model id already in the local Hugging Face cache, "
                         "or timm:<folder or file>")


def _load_folder(folder: str, device: str, name: str | None = None, identity: str | None = None) -> ModelAdapter:
    """Read config.json, pick the family by model_type, and load."""
    from transformers import AutoConfig

    if not (Path(folder) / "config.json").is_file():
        raise ModelLoadError(f"{folder} has no config.json: point to a folder saved with save_pretrained")
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True, trust_remote_code=False)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"unreadable or unsupported config.json in {folder}: {first_line(exc)} "
                             f"(supported families: {supported_families()})") from exc
    warnings = []
    try:
        import json

        keys = remote_code_keys(json.loads((Path(folder) / "config.json").read_text(encoding="utf-8")))
    except (OSError, ValueError):
        keys = []
    if keys:
        warnings.append(remote_code_message(Path(folder).name, keys, refused=False))
    if vit_hf.is_vision(config):
        adapter = vit_hf.load(folder, config, device, name=name, identity=identity)
    elif getattr(config, "is_encoder_decoder", False) and config.model_type not in hf.REFUSED:
        from precompute.models import seq2seq  # builds on hf.py's text loading (so hf.py cannot import it)

        adapter = seq2seq.load(folder, config, device, name=name, identity=identity)
    else:
        adapter = hf.load_text(folder, config, device, name=name, identity=identity)
    adapter.load_warnings = warnings
    return adapter
