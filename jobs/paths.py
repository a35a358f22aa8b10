"""What a user may point a run started from the UI at: built-in models and corpora, folders and
files under the configured roots (``model_roots`` / ``corpus_roots``), and files they uploaded.

Every check resolves symlinks first and then asks whether the real path lies inside a real root,
so ``../`` traversal, absolute paths elsewhere and symlinks that lead out of a root are all the
same refusal. Model folders whose config asks for code shipped with the model (``auto_map``,
``trust_remote_code``) or that carry Python files are refused: nothing a user points at is ever
executed. Uploads are decoded, size-checked and written under a random name in
``<jobs dir>/uploads`` (never the user's name, never executable), then read by the corpus loader
itself so its own one-line errors (UTF-8, JSON, columns) are shown.

Every refusal is a :class:`PathRefused` whose message is one line naming the fix.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import re
import secrets
import time
from pathlib import Path, PurePosixPath, PureWindowsPath

BUILTIN_CORPORA = {"demo": "demo text corpus (310 sentences, shipped)",
                   "demo-images": "demo image corpus (shipped)"}
UPLOAD_PREFIX = "upload:"
UPLOAD_EXTENSIONS = (".txt", ".jsonl", ".csv")
_UPLOAD_NAME = re.compile(r"^[0-9a-f]{32}\.(txt|jsonl|csv)$")
_MAX_LISTED = 60          # folders/files offered in the pickers
UPLOAD_KEEP_DAYS = 14
_MAX_FOLDER_ENTRIES = 5000


class PathRefused(ValueError):
    """A model, corpus or upload the UI will not use; one line naming the fix."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


def builtin_models() -> dict[str, str]:
    from precompute.models import BUILTIN_MODELS

    return dict(BUILTIN_MODELS)


# ------------------------------------------------------------------ roots
def _real_roots(roots) -> list[Path]:
    out = []
    for r in roots or ():
        try:
            out.append(Path(r).expanduser().resolve(strict=True))
        except (OSError, RuntimeError):
            continue  # a configured root that does not exist holds nothing
    return out


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == r or path.is_relative_to(r) for r in roots)


def resolve_under(spec: str, roots, what: str, env_name: str) -> Path:
    """The real path of ``spec`` if it lies inside one of ``roots``; PathRefused otherwise.

    A relative ``spec`` is looked up under each root in turn. ``..`` components are refused
    outright (even when they would land inside a root), symlinks are resolved before the check.
    """
    spec = str(spec or "").strip()
    if not spec:
        raise PathRefused(f"no {what} given: pick one from the list")
    if "\0" in spec or len(spec) > 4096:
        raise PathRefused(f"{what} path is not a usable path: pick one from the list")
    real_roots = _real_roots(roots)
    if not real_roots:
        if roots:
            raise PathRefused(f"the allowed {what} folders ({', '.join(map(str, roots))}) do not exist on this "
                              f"server: use a built-in {what}, or ask the admin to fix {env_name}")
        raise PathRefused(f"no {what} folders are configured on this server ({env_name} is empty): "
                          f"use a built-in {what}, or ask the admin to set {env_name}")
    p = Path(spec).expanduser()
    if ".." in p.parts:
        raise PathRefused(f"{what} path {spec!r} contains '..': give a path inside the allowed "
                          f"{what} folders ({', '.join(map(str, real_roots))})")
    candidates = [p] if p.is_absolute() else [r / p for r in real_roots]
    for c in candidates:
        try:
            real = c.resolve(strict=True)
        except (OSError, RuntimeError):  # missing, loop, permission
            continue
        if _inside(real, real_roots):
            return real
        raise PathRefused(f"{what} {spec!r} is outside the allowed {what} folders "
                          f"({', '.join(map(str, real_roots))})"
                          + (" (it is a symlink that leads out of them)" if c != real and _lexically_inside(c, real_roots)
                             else "") + ": pick one inside them")
    raise PathRefused(f"{what} {spec!r} not found under the allowed {what} folders "
                      f"({', '.join(map(str, real_roots))}): check the name")


def _lexically_inside(path: Path, roots: list[Path]) -> bool:
    return any(str(path).startswith(str(r) + os.sep) for r in roots)


def _check_entries(folder: Path, roots: list[Path], what: str) -> list[Path]:
    """Every entry of ``folder`` (non-recursive) must resolve inside the roots too."""
    entries = []
    try:
        for i, e in enumerate(folder.iterdir()):
            if i >= _MAX_FOLDER_ENTRIES:
                raise PathRefused(f"{what} folder {folder.name} has more than {_MAX_FOLDER_ENTRIES} entries: "
                                  "split it into smaller folders")
            try:
                real = e.resolve(strict=True)
            except (OSError, RuntimeError):
                raise PathRefused(f"{what} folder {folder.name} holds a broken link {e.name!r}: remove it") from None
            if not _inside(real, roots):
                raise PathRefused(f"{what} folder {folder.name} holds {e.name!r}, a symlink that leads outside "
                                  f"the allowed {what} folders: remove it")
            entries.append(e)
    except OSError as exc:
        raise PathRefused(f"cannot read {what} folder {folder.name} ({exc.strerror}): check its permissions") from None
    return entries


# ------------------------------------------------------------------ models
def check_model(spec: str, settings) -> str:
    """The model spec a job may load: a built-in name, or the real path of a folder under the
    model roots that asks for no remote code."""
    spec = str(spec or "").strip()
    if spec in builtin_models():
        return spec
    if spec.startswith("timm:"):
        raise PathRefused("timm:<path> models cannot be started from the page: use a transformers folder "
                          "under the model roots, or the command line")
    folder = resolve_under(spec, settings.model_roots, "model", "ATLAS_MODEL_ROOTS")
    if not folder.is_dir():
        raise PathRefused(f"model {spec!r} is a file, not a model folder: give the folder holding config.json")
    roots = _real_roots(settings.model_roots)
    entries = _check_entries(folder, roots, "model")
    config = folder / "config.json"
    if not config.is_file():
        raise PathRefused(f"model folder {folder.name} has no config.json: point to a folder saved with save_pretrained")
    try:
        cfg = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise PathRefused(f"model folder {folder.name}: config.json is not readable JSON ({exc.__class__.__name__}): "
                          "fix or replace it") from None
    if not isinstance(cfg, dict):
        raise PathRefused(f"model folder {folder.name}: config.json is not a JSON object: fix or replace it")
    from precompute.models import remote_code_keys, remote_code_message

    keys = remote_code_keys(cfg)
    if keys:
        raise PathRefused(remote_code_message(folder.name, keys, refused=True))
    code = sorted(e.name for e in entries if e.suffix.lower() in (".py", ".pyc", ".so"))
    if code:
        raise PathRefused(f"model folder {folder.name} carries code ({', '.join(code[:3])}): refused; "
                          "Attention Atlas never runs code shipped with a model — remove it")
    return str(folder)


def list_models(settings) -> list[dict]:
    """Dropdown options: the built-in models, then model folders found under the roots."""
    opts = [{"label": f"{name} — {desc}", "value": name} for name, desc in builtin_models().items()]
    seen = 0
    for root in _real_roots(settings.model_roots):
        for cfg in _walk(root, "config.json", depth=3):
            folder = cfg.parent
            try:
                real = folder.resolve(strict=True)
            except OSError:
                continue
            if not _inside(real, _real_roots(settings.model_roots)):
                continue
            opts.append({"label": f"{folder.relative_to(root) if folder != root else folder.name}  ({root})",
                         "value": str(real)})
            seen += 1
            if seen >= _MAX_LISTED:
                return opts
    return opts


# ------------------------------------------------------------------ corpora
def check_corpus(spec: str, settings) -> str:
    """The corpus spec a job may load: a built-in name, an upload token, or the real path of a
    .txt/.jsonl/.csv file or an image folder under the corpus roots."""
    from precompute.corpus import TEXT_EXTENSIONS

    spec = str(spec or "").strip()
    if spec in BUILTIN_CORPORA:
        return spec
    if spec.startswith(UPLOAD_PREFIX):
        return str(upload_path(spec, settings))
    path = resolve_under(spec, settings.corpus_roots, "corpus", "ATLAS_CORPUS_ROOTS")
    roots = _real_roots(settings.corpus_roots)
    if path.is_dir():
        _check_entries(path, roots, "corpus")
        return str(path)
    if path.suffix.lower() not in TEXT_EXTENSIONS:
        raise PathRefused(f"corpus {path.name}: unsupported file type {path.suffix or '(none)'}: "
                          f"use {', '.join(TEXT_EXTENSIONS)} or a folder of images")
    return str(path)


def list_corpora(settings) -> list[dict]:
    from precompute.corpus import IMAGE_EXTENSIONS, TEXT_EXTENSIONS

    opts = [{"label": f"{name} — {desc}", "value": name} for name, desc in BUILTIN_CORPORA.items()]
    n = 0
    real_roots = _real_roots(settings.corpus_roots)
    for root in real_roots:
        for p in _walk(root, None, depth=2):
            try:
                real = p.resolve(strict=True)
            except OSError:
                continue
            if not _inside(real, real_roots):
                continue
            if p.is_file() and p.suffix.lower() in TEXT_EXTENSIONS:
                label = str(p.relative_to(root))
            elif p.is_dir() and any(c.suffix.lower() in IMAGE_EXTENSIONS for c in _limited(p.iterdir(), 200)):
                label = f"{p.relative_to(root)}/ (images)"
            else:
                continue
            opts.append({"label": f"{label}  ({root})", "value": str(real)})
            n += 1
            if n >= _MAX_LISTED:
                return opts
    return opts


def _limited(it, n):
    for i, x in enumerate(it):
        if i >= n:
            return
        yield x


def _walk(root: Path, name: str | None, depth: int):
    """Entries under root (depth-limited, sorted, hidden skipped); with ``name``: files of that name."""
    todo = [(root, 0)]
    while todo:
        folder, d = todo.pop(0)
        try:
            entries = sorted(_limited(folder.iterdir(), 500))
        except OSError:
            continue
        for e in entries:
            if e.name.startswith("."):
                continue
            if name is None:
                yield e
            elif e.name == name and e.is_file():
                yield e
            if d + 1 < depth and e.is_dir() and not e.is_symlink():
                todo.append((e, d + 1))


# ------------------------------------------------------------------ uploads
def uploads_dir(settings) -> Path:
    d = Path(settings.jobs_path) / "uploads"
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    return d


def upload_path(token: str, settings) -> Path:
    """The stored file behind an ``upload:<name>`` token (only names this module generates)."""
    name = str(token)[len(UPLOAD_PREFIX):] if str(token).startswith(UPLOAD_PREFIX) else str(token)
    if not _UPLOAD_NAME.match(name):
        raise PathRefused("unknown upload: upload the corpus file again")
    path = uploads_dir(settings) / name
    if not path.is_file() or path.is_symlink():
        raise PathRefused("the uploaded corpus is no longer on the server: upload it again")
    return path


def display_name(filename: str) -> str:
    """The user's file name reduced to its last component, printable, at most 80 characters."""
    raw = str(filename or "upload")
    base = PureWindowsPath(PurePosixPath(raw).name).name or "upload"
    base = "".join(ch if ch.isprintable() else "?" for ch in base).strip() or "upload"
    return base[:80]


def human_size(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 2**20 else f"{n / 1024:.1f} KB" if n >= 1024 else f"{n} bytes"


def decoded_size(contents: str) -> int:
    """Bytes the base64 payload of a data URL decodes to (without decoding it)."""
    b64 = str(contents or "").partition(",")[2]
    n = len(b64.rstrip("="))
    return n * 3 // 4


def user_upload_bytes(folder: Path, user: str) -> int:
    """Bytes of the uploads a user keeps on the server (from their .meta.json records)."""
    total = 0
    for meta in folder.glob("*.meta.json"):
        try:
            m = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if m.get("user") == user and (folder / meta.name[:-len(".meta.json")]).is_file():
            total += int(m.get("bytes") or 0)
    return total


def save_upload(contents: str, filename: str, settings, text_column: str | None = None,
                user: str | None = None) -> dict:
    """Decode a dcc.Upload data URL, check it, store it under a random name and validate it with
    the corpus loader. Returns {token, name, n_inputs, bytes, warnings}; PathRefused otherwise."""
    from precompute.corpus import CorpusError, load_corpus

    name = display_name(filename)
    ext = PurePosixPath(name).suffix.lower()
    if ext not in UPLOAD_EXTENSIONS:
        raise PathRefused(f"upload {name}: only {', '.join(UPLOAD_EXTENSIONS)} corpora can be uploaded "
                          "(uploads are read as text, never run)")
    limit = int(settings.upload_max_bytes)
    head, sep, b64 = str(contents or "").partition(",")
    if not sep or not head.startswith("data:") or ";base64" not in head:
        raise PathRefused(f"upload {name} arrived garbled: upload it again")
    if decoded_size(contents) > limit:
        raise PathRefused(f"upload {name} is {human_size(decoded_size(contents))}, over the "
                          f"{human_size(limit)} limit: upload a smaller file")
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise PathRefused(f"upload {name} arrived garbled (bad base64): upload it again") from None
    if len(data) > limit:
        raise PathRefused(f"upload {name} is {human_size(len(data))}, over the {human_size(limit)} limit: "
                          "upload a smaller file")
    if not data.strip():
        raise PathRefused(f"upload {name} is empty: upload a file with at least one input")
    folder = uploads_dir(settings)
    _prune(folder)
    if user is not None:
        quota = int(getattr(settings, "upload_quota_bytes", 0) or 0)
        used = user_upload_bytes(folder, user)
        if quota and used + len(data) > quota:
            raise PathRefused(f"upload {name} ({human_size(len(data))}) would exceed your upload space: you keep "
                              f"{human_size(used)} of {human_size(quota)} on the server (uploads are forgotten after "
                              f"{UPLOAD_KEEP_DAYS} days): ask the admin, or use a corpus under the corpus folders")
    stored = f"{secrets.token_hex(16)}{ext}"
    path = folder / stored
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise PathRefused(f"upload {name} could not be stored ({exc.strerror}): tell the admin") from None
    try:
        corpus = load_corpus(str(path), text_column=text_column or None)
    except CorpusError as exc:
        path.unlink(missing_ok=True)
        raise PathRefused(str(exc).replace(stored, name)) from None
    if corpus.kind != "text":
        path.unlink(missing_ok=True)
        raise PathRefused(f"upload {name} is not a text corpus: upload a .txt, .jsonl or .csv file")
    info = {"token": UPLOAD_PREFIX + stored, "name": name, "n_inputs": len(corpus), "bytes": len(data),
            "warnings": [w.replace(stored, name) for w in corpus.warnings]}
    (folder / f"{stored}.meta.json").write_text(json.dumps({**{k: info[k] for k in ("name", "n_inputs", "bytes")},
                                                        "user": user}), encoding="utf-8")
    return info


def _prune(folder: Path) -> None:
    """Forget uploads older than UPLOAD_KEEP_DAYS (their runs stay in the store; resuming one needs
    the file uploaded again)."""
    cutoff = time.time() - UPLOAD_KEEP_DAYS * 86400
    try:
        for f in folder.iterdir():
            if f.is_file() and f.stat().st_mtime < cutoff:
                f.unlink(missing_ok=True)
    except OSError:
        pass


def source_label(spec: str, checked: str) -> str:
    """A short name for the job list: the built-in name, the upload's original file name, or the
    folder / file name (never a full server path)."""
    spec = str(spec)
    if spec.startswith(UPLOAD_PREFIX):
        try:
            meta = json.loads((Path(checked).parent / f"{Path(checked).name}.meta.json").read_text(encoding="utf-8"))
            return f"upload {meta['name']}"
        except (OSError, ValueError, KeyError):
            return "upload"
    if spec in BUILTIN_CORPORA or spec in builtin_models():
        return spec
    return Path(checked).name
