"""Corpus input: turn a corpus spec into a list of model inputs.

``load_corpus(spec)`` accepts

* ``"demo"``          – the shipped text corpus ``precompute/data/demo_corpus.txt``;
* ``"demo-images"``   – the shipped image corpus (:mod:`precompute.demo_images`);
* ``*.txt``           – one input per non-blank line;
* ``*.jsonl``         – one JSON object per line, text in ``text_column`` (default ``"text"``);
* ``*.csv``           – a CSV file with a header row, text in ``text_column``;
* ``*.tsv``           – one input per non-blank line: a text, or a sentence pair ``A<TAB>B``;
* ``text_column="a,b"`` (.csv/.jsonl) – sentence pairs from two columns (a blank ``b``: a single text);
* a folder            – every image in it (non-recursive, sorted by name), as RGB.

A sentence pair is the item ``(a, b)`` (a tuple; a list once stored as JSON): the text adapters
encode it as the tokenizer encodes a pair (BERT: ``[CLS] a [SEP] b [SEP]`` with token_type_ids).

Every problem is reported as a :class:`CorpusError` whose message is a single line naming
what is wrong and how to fix it. Nothing is dropped silently: unusable items are counted in
``Corpus.skipped`` and described in ``Corpus.warnings``; ``max_inputs`` adds a warning too.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import struct
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageOps

MAX_CORPUS_BYTES = 200_000_000  # 200 MB: larger text files are refused
DATA_DIR = Path(__file__).parent / "data"
DEMO_CORPUS_PATH = DATA_DIR / "demo_corpus.txt"
LABEL_CHARS = 40
DEFAULT_TEXT_COLUMN = "text"

TEXT_EXTENSIONS = (".txt", ".jsonl", ".csv", ".tsv")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
# what PIL raises on a damaged or hostile image file (its plugins use all of these)
IMAGE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, Image.DecompressionBombError,
                LookupError, TypeError, ZeroDivisionError)
_MAX_NAMES_IN_WARNING = 10


log = logging.getLogger(__name__)


class CorpusError(Exception):
    """One clear line naming the problem and the fix."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


@dataclass
class Corpus:
    name: str
    kind: str  # "text" | "image"
    items: list
    labels: list[str]
    hash: str
    skipped: int = 0
    warnings: list[str] = field(default_factory=list)
    targets: list[str] | None = None   # encoder–decoder runs: the target text of each input (CSV target column)

    def __len__(self) -> int:
        return len(self.items)


# ----------------------------------------------------------------------------- helpers

def text_label(text: str, limit: int = LABEL_CHARS) -> str:
    """A short one-line label: whitespace collapsed, cut to ``limit`` characters with '…'."""
    s = " ".join(text.split())
    return s if len(s) <= limit else s[: limit - 1].rstrip() + "…"


def _hash_texts(texts: list) -> str:
    h = hashlib.sha256(b"attention-atlas corpus v1\0text\0")
    for t in texts:
        if isinstance(t, (tuple, list)):  # a sentence pair (plain texts hash as before)
            h.update(b"\0pair\0")
            for part in t:
                b = part.encode("utf-8")
                h.update(struct.pack("<Q", len(b)))
                h.update(b)
            continue
        b = t.encode("utf-8")
        h.update(struct.pack("<Q", len(b)))
        h.update(b)
    return h.hexdigest()


def item_label(item) -> str:
    """Label of a text item: the text, or a pair's two sentences joined by ' ‖ '."""
    return text_label(" ‖ ".join(item) if isinstance(item, (tuple, list)) else item)


def pair_columns(column: str | None) -> tuple[str, str] | None:
    """``"a,b"`` → ("a", "b"): two text columns make sentence pairs."""
    if column is None or column.count(",") != 1:
        return None
    a, b = (c.strip() for c in column.split(","))
    return (a, b) if a and b else None


def _hash_images(images: list[Image.Image]) -> str:
    h = hashlib.sha256(b"attention-atlas corpus v1\0image\0")
    for im in images:
        rgb = im if im.mode == "RGB" else im.convert("RGB")
        w, hgt = rgb.size
        h.update(struct.pack("<II", w, hgt))
        h.update(rgb.tobytes())
    return h.hexdigest()


def _name_list(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_NAMES_IN_WARNING])
    if len(names) > _MAX_NAMES_IN_WARNING:
        shown += f" and {len(names) - _MAX_NAMES_IN_WARNING} more"
    return shown


def _check_max_inputs(max_inputs: int | None) -> None:
    if max_inputs is None:
        return
    if isinstance(max_inputs, bool) or not isinstance(max_inputs, int) or max_inputs < 1:
        raise CorpusError(f"--max-inputs must be a positive whole number, got {max_inputs!r}")


def _cap(items: list, labels: list[str], max_inputs: int | None, warnings: list[str],
         noun: str = "inputs") -> tuple[list, list[str]]:
    if max_inputs is not None and len(items) > max_inputs:
        dropped = len(items) - max_inputs
        warnings.append(f"--max-inputs {max_inputs}: kept the first {max_inputs} of "
                        f"{len(items)} {noun}, dropped {dropped}")
        return items[:max_inputs], labels[:max_inputs]
    return items, labels


def _read_text(path: Path) -> str:
    """Read a whole text corpus file as UTF-8 (a leading BOM is allowed), with size check."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise CorpusError(f"cannot read corpus {path}: {e.strerror or e} — check the path "
                          f"and its permissions") from None
    if size > MAX_CORPUS_BYTES:
        raise CorpusError(
            f"corpus {path.name} is {size / 1e6:.0f} MB, over the {MAX_CORPUS_BYTES / 1e6:.0f} MB "
            f"limit — split it into smaller files (e.g. `split -l 100000`); --max-inputs then caps "
            f"how many inputs a run uses")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise CorpusError(f"cannot read corpus {path}: {e.strerror or e} — check the path "
                          f"and its permissions") from None
    bom = b"\xef\xbb\xbf"
    offset0 = len(bom) if data.startswith(bom) else 0
    try:
        return data[offset0:].decode("utf-8")
    except UnicodeDecodeError as e:
        off = offset0 + e.start
        line = data.count(b"\n", 0, off) + 1
        col = off - (data.rfind(b"\n", 0, off) + 1) + 1
        bad = data[off:off + 1].hex()
        raise CorpusError(
            f"corpus {path.name} is not valid UTF-8: byte 0x{bad} at offset {off} "
            f"(line {line}, column {col}) — re-save the file as UTF-8") from None


def _lines(text: str) -> list[str]:
    """Split on newlines only (not on form feeds etc.), dropping the line terminators."""
    return [ln[:-1] if ln.endswith("\r") else ln for ln in text.split("\n")]


def _empty_error(path: Path, what: str) -> CorpusError:
    return CorpusError(f"corpus {path.name} has no inputs ({what}) — add at least one "
                       f"non-blank input, or use 'demo' to try the tool")


# ----------------------------------------------------------------------------- loaders

def _load_txt(path: Path, warnings: list[str]) -> list[str]:
    texts = [ln.rstrip() for ln in _lines(_read_text(path))]
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise _empty_error(path, "the file is empty or every line is blank")
    return texts


def _load_tsv(path: Path, warnings: list[str]) -> tuple[list, int]:
    """One input per non-blank line: a text, or a sentence pair ``A<TAB>B``."""
    items: list = []
    skipped_where: list[str] = []
    for lineno, raw in enumerate(_lines(_read_text(path)), start=1):
        if not raw.strip():
            continue
        parts = raw.split("\t")
        if len(parts) > 2:
            raise CorpusError(f"corpus {path.name} line {lineno} has {len(parts)} tab-separated fields — a .tsv "
                              f"corpus holds one text or one sentence pair (two fields: A<TAB>B) per line")
        a = parts[0].strip()
        b = parts[1].strip() if len(parts) == 2 else ""
        if not a:
            skipped_where.append(f"line {lineno}")
            continue
        items.append((a, b) if b else a)
    if skipped_where:
        warnings.append(f"skipped {len(skipped_where)} lines with an empty first sentence: "
                        f"{_name_list(skipped_where)}")
    if not items:
        raise _empty_error(path, "the file is empty or every line is blank")
    return items, len(skipped_where)


def _pair_value(a, b_value, b_column: str, where: str, path: Path):
    """A pair (a, b) from two columns; a blank second sentence leaves the single text a."""
    if a is None:
        return None
    b = _column_value(b_value, b_column, where, path, [])
    return (a, b) if b is not None else a


def _column_value(value, column: str, where: str, path: Path, skipped_where: list[str]) -> str | None:
    if value is None:
        skipped_where.append(where)
        return None
    if isinstance(value, bool) or isinstance(value, (int, float)):
        value = str(value)
    if not isinstance(value, str):
        raise CorpusError(
            f"corpus {path.name} {where}: column '{column}' holds a {type(value).__name__}, "
            f"not text — point --text-column at a text field")
    if not value.strip():
        skipped_where.append(where)
        return None
    return value


def _missing_column(path: Path, column: str, keys, where: str) -> CorpusError:
    avail = ", ".join(repr(k) for k in keys) if keys else "none"
    return CorpusError(
        f"corpus {path.name} {where} has no column '{column}' (available: {avail}) — "
        f"choose the text column with --text-column NAME")


def _empty_records_warning(skipped_where: list[str], column: str, warnings: list[str]) -> None:
    if skipped_where:
        warnings.append(f"skipped {len(skipped_where)} records with an empty '{column}': "
                        f"{_name_list(skipped_where)}")


def _load_jsonl(path: Path, column: str, warnings: list[str]) -> tuple[list[str], int]:
    pair = pair_columns(column)
    column, second = pair if pair else (column, None)
    texts: list = []
    skipped_where: list[str] = []
    for lineno, raw in enumerate(_lines(_read_text(path)), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise CorpusError(
                f"corpus {path.name} line {lineno} is not valid JSON ({e.msg} at column "
                f"{e.colno}) — fix that line; a .jsonl file needs one JSON object per line") from None
        if not isinstance(obj, dict):
            raise CorpusError(
                f"corpus {path.name} line {lineno} is a JSON {type(obj).__name__}, not an object "
                f"— write one object per line, e.g. {{\"{column}\": \"...\"}}")
        for col in (column, second):
            if col is not None and col not in obj:
                raise _missing_column(path, col, list(obj.keys()), f"line {lineno}")
        t = _column_value(obj[column], column, f"line {lineno}", path, skipped_where)
        if second is not None:
            t = _pair_value(t, obj[second], second, f"line {lineno}", path)
        if t is not None:
            texts.append(t)
    _empty_records_warning(skipped_where, column, warnings)
    if not texts:
        raise _empty_error(path, "no record has non-blank text" if skipped_where
                           else "the file is empty or every line is blank")
    return texts, len(skipped_where)


def _load_csv(path: Path, column: str, warnings: list[str]) -> tuple[list[str], int]:
    text = _read_text(path)
    pair = pair_columns(column)
    limit = csv.field_size_limit()
    if limit < MAX_CORPUS_BYTES:
        csv.field_size_limit(MAX_CORPUS_BYTES)
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        fieldnames = reader.fieldnames
    except csv.Error as e:
        raise CorpusError(f"corpus {path.name} header line cannot be parsed as CSV ({e}) — "
                          f"fix the header row") from None
    if not fieldnames:
        raise _empty_error(path, "the file is empty; a .csv corpus needs a header row")
    if pair and column not in fieldnames:
        column, second = pair
    else:
        second = None
    for col in (column, second):
        if col is not None and col not in fieldnames:
            raise _missing_column(path, col, fieldnames, "header")
    texts: list = []
    skipped_where: list[str] = []
    try:
        for row in reader:
            where = f"line {reader.line_num}"
            if all((v is None or (isinstance(v, str) and not v.strip())) for k, v in row.items()
                   if k is not None):
                continue  # a blank row is not an input
            t = _column_value(row.get(column), column, where, path, skipped_where)
            if second is not None:
                t = _pair_value(t, row.get(second), second, where, path)
            if t is not None:
                texts.append(t)
    except csv.Error as e:
        raise CorpusError(f"corpus {path.name} line {reader.line_num} cannot be parsed as CSV "
                          f"({e}) — fix the quoting on that line") from None
    _empty_records_warning(skipped_where, column, warnings)
    if not texts:
        raise _empty_error(path, "no row has non-blank text" if skipped_where
                           else "the file has a header but no rows")
    return texts, len(skipped_where)


def _load_csv_pairs(path: Path, column: str, target: str, warnings: list[str]) -> tuple[list[str], list[str], int]:
    """(sources, targets, skipped) of a CSV (or, for a .tsv, tab-separated with a header row) with a
    source and a target column; rows where either is blank are skipped (counted, with a warning)."""
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    reader = csv.DictReader(io.StringIO(_read_text(path), newline=""), delimiter=delimiter)
    fieldnames = reader.fieldnames or []
    if column not in fieldnames:
        raise _missing_column(path, column, fieldnames, "header")
    if target not in fieldnames:
        raise CorpusError(f"corpus {path.name} header has no column {target!r} (available: "
                          f"{', '.join(repr(f) for f in fieldnames)}) — name the target column with --target-column NAME")
    sources, targets, skipped = [], [], 0
    try:
        for row in reader:
            src, tgt = (row.get(column) or "").strip(), (row.get(target) or "").strip()
            if not src and not tgt:
                continue
            if not src or not tgt:
                skipped += 1
                continue
            sources.append(src)
            targets.append(tgt)
    except csv.Error as e:
        raise CorpusError(f"corpus {path.name} line {reader.line_num} cannot be parsed as CSV "
                          f"({e}) — fix the quoting on that line") from None
    if skipped:
        warnings.append(f"skipped {skipped} rows with an empty '{column}' or '{target}'")
    if not sources:
        raise _empty_error(path, f"no row has both a '{column}' and a '{target}'")
    return sources, targets, skipped


def decode_image(path: Path) -> Image.Image:
    """Decode one image file to an RGB PIL image (first frame, EXIF orientation applied,
    transparency composited over white). Raises on any decoding problem."""
    with Image.open(path) as im:
        im.load()
        try:
            im = ImageOps.exif_transpose(im)
        except IMAGE_ERRORS as exc:  # a broken EXIF block: the pixels as stored
            log.info("%s: EXIF orientation unreadable (%s), image kept as stored", path.name, exc)
        has_alpha = im.mode in ("RGBA", "LA", "RGBa", "La", "PA") or (
            im.mode == "P" and "transparency" in im.info)
        if has_alpha:
            rgba = im.convert("RGBA")
            bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(bg, rgba).convert("RGB")
        return im.convert("RGB")


def _load_folder(path: Path, max_inputs: int | None, warnings: list[str]) -> tuple[list, list[str], int]:
    try:
        entries = sorted(p for p in path.iterdir() if p.is_file())
    except OSError as e:
        raise CorpusError(f"cannot read folder {path}: {e.strerror or e} — check its "
                          f"permissions") from None
    files = [p for p in entries if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")]
    if not files:
        hint = ""
        if any(p.suffix.lower() in TEXT_EXTENSIONS for p in entries):
            hint = "; for a text corpus pass the .txt/.jsonl/.csv file itself"
        raise CorpusError(
            f"folder {path.name} has no image files ({', '.join(IMAGE_EXTENSIONS)}) — "
            f"put images in it or pass another folder{hint}")
    images: list[Image.Image] = []
    labels: list[str] = []
    failed: list[str] = []
    for i, f in enumerate(files):
        if max_inputs is not None and len(images) >= max_inputs:
            rest = len(files) - i
            warnings.append(f"--max-inputs {max_inputs}: kept the first {max_inputs} images, "
                            f"dropped {rest} more image file(s)")
            break
        try:
            images.append(decode_image(f))
            labels.append(f.name)
        except IMAGE_ERRORS as exc:  # skipped and named in the run's warnings
            log.info("%s: not decodable (%s: %s)", f.name, exc.__class__.__name__, exc)
            failed.append(f.name)
    if failed:
        noun = "image" if len(failed) == 1 else "images"
        warnings.insert(0, f"skipped {len(failed)} {noun} that failed to decode: "
                           f"{_name_list(failed)}")
    if not images:
        raise CorpusError(
            f"folder {path.name} has no decodable image ({len(failed)} file(s) failed to decode: "
            f"{_name_list(failed)}) — replace the damaged files or convert them to PNG/JPEG")
    return images, labels, len(failed)


# ----------------------------------------------------------------------------- entry point

def load_corpus(spec: str, text_column: str | None = None, max_inputs: int | None = None,
                target_column: str | None = None) -> Corpus:
    """Load a corpus: ``"demo"``, ``"demo-images"``, a .txt/.jsonl/.csv file or an image folder.
    ``target_column`` (.csv, or .tsv with a header row): source/target pairs for encoder–decoder models."""
    _check_max_inputs(max_inputs)
    if target_column is not None:
        path = Path(str(spec)).expanduser()
        if path.suffix.lower() not in (".csv", ".tsv") or not path.is_file():
            raise CorpusError(f"--target-column needs a .csv corpus (or a .tsv with a header row) with that column, "
                              f"not {spec!r}")
        warnings = []
        column = text_column if text_column is not None else DEFAULT_TEXT_COLUMN
        texts, targets, skipped = _load_csv_pairs(path, column, target_column, warnings)
        labels = [text_label(t) for t in texts]
        texts, labels = _cap(texts, labels, max_inputs, warnings)
        targets = targets[:len(texts)]
        return Corpus(path.name, "text", texts, labels, _hash_texts(texts + ["\0targets\0"] + targets), skipped,
                      warnings, targets=targets)
    warnings: list[str] = []
    spec = str(spec)

    if spec == "demo":
        texts = _load_txt(DEMO_CORPUS_PATH, warnings)
        labels = [text_label(t) for t in texts]
        texts, labels = _cap(texts, labels, max_inputs, warnings)
        return Corpus("demo", "text", texts, labels, _hash_texts(texts), 0, warnings)

    if spec == "demo-images":
        from .demo_images import demo_images_with_missing

        pairs, missing = demo_images_with_missing()
        if missing:
            warnings.append(f"left out {len(missing)} sample images not available offline: "
                            f"{_name_list(missing)}")
        labels = [label for label, _ in pairs]
        images = [im for _, im in pairs]
        images, labels = _cap(images, labels, max_inputs, warnings, noun="images")
        return Corpus("demo-images", "image", images, labels, _hash_images(images), 0, warnings)

    if not spec.strip():
        raise CorpusError("no corpus given — pass 'demo', 'demo-images', a .txt/.jsonl/.csv "
                          "file or an image folder")
    path = Path(spec).expanduser()
    if not path.exists():
        raise CorpusError(f"corpus not found: {spec} — check the path, or use 'demo' or "
                          f"'demo-images'")

    if path.is_dir():
        images, labels, skipped = _load_folder(path, max_inputs, warnings)
        return Corpus(path.resolve().name or str(path), "image", images, labels,
                      _hash_images(images), skipped, warnings)

    ext = path.suffix.lower()
    column = text_column if text_column is not None else DEFAULT_TEXT_COLUMN
    skipped = 0
    if ext == ".txt":
        if text_column is not None:
            warnings.append(f"--text-column {text_column!r} ignored: a .txt corpus has one input "
                            f"per line")
        texts = _load_txt(path, warnings)
    elif ext == ".jsonl":
        texts, skipped = _load_jsonl(path, column, warnings)
    elif ext == ".csv":
        texts, skipped = _load_csv(path, column, warnings)
    elif ext == ".tsv":
        if text_column is not None:
            warnings.append(f"--text-column {text_column!r} ignored: a .tsv corpus has one text or one "
                            f"sentence pair (A<TAB>B) per line")
        texts, skipped = _load_tsv(path, warnings)
    else:
        raise CorpusError(
            f"unsupported corpus file type '{ext or path.name}' — use one of "
            f"{', '.join(TEXT_EXTENSIONS)}, or a folder of images "
            f"({', '.join(IMAGE_EXTENSIONS)})")
    labels = [item_label(t) for t in texts]
    texts, labels = _cap(texts, labels, max_inputs, warnings)
    return Corpus(path.name, "text", texts, labels, _hash_texts(texts), skipped, warnings)


__all__ = ["Corpus", "CorpusError", "load_corpus", "decode_image", "text_label", "item_label", "pair_columns",
           "MAX_CORPUS_BYTES", "IMAGE_EXTENSIONS", "TEXT_EXTENSIONS", "DEMO_CORPUS_PATH"]
