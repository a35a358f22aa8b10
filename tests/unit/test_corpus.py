"""Tests for precompute.corpus and precompute.demo_images."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from precompute import corpus as corpus_mod
from precompute.corpus import Corpus, CorpusError, load_corpus


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    return msg


# ----------------------------------------------------------------------------- text files

def test_txt_one_input_per_nonblank_line(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("first line  \n\n   \nsecond line\r\n\tindented third\n", encoding="utf-8")
    c = load_corpus(str(p))
    assert isinstance(c, Corpus)
    assert c.name == "notes.txt" and c.kind == "text"
    assert c.items == ["first line", "second line", "\tindented third"]
    assert c.labels[0] == "first line" and len(c.labels) == 3
    assert c.skipped == 0 and c.warnings == []
    assert re.fullmatch(r"[0-9a-f]{64}", c.hash)


def test_txt_bom_is_ignored(tmp_path):
    p = tmp_path / "bom.txt"
    p.write_bytes(b"\xef\xbb\xbfhello\nworld\n")
    assert load_corpus(str(p)).items == ["hello", "world"]


def test_labels_are_short(tmp_path):
    p = tmp_path / "long.txt"
    p.write_text("word " * 50 + "\nshort\n", encoding="utf-8")
    c = load_corpus(str(p))
    assert len(c.labels[0]) <= 40 and c.labels[0].endswith("…")
    assert c.labels[1] == "short"


def test_jsonl_default_and_custom_column(tmp_path):
    p = tmp_path / "data.jsonl"
    rows = [{"text": "alpha", "body": "one"}, {"text": "beta", "body": "two"}]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    assert load_corpus(str(p)).items == ["alpha", "beta"]
    c = load_corpus(str(p), text_column="body")
    assert c.items == ["one", "two"] and c.kind == "text" and c.name == "data.jsonl"


def test_jsonl_missing_column_names_keys_and_option(tmp_path):
    p = tmp_path / "data.jsonl"
    p.write_text(json.dumps({"sentence": "x", "id": 1}) + "\n", encoding="utf-8")
    with pytest.raises(CorpusError) as e:
        load_corpus(str(p))
    msg = _one_line(e)
    assert "'text'" in msg and "'sentence'" in msg and "'id'" in msg and "--text-column" in msg


def test_jsonl_bad_line_reports_line_number(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"text": "ok"}\n\n{"text": "broken"\n', encoding="utf-8")
    with pytest.raises(CorpusError) as e:
        load_corpus(str(p))
    assert "line 3" in _one_line(e)


def test_jsonl_non_object_line(tmp_path):
    p = tmp_path / "list.jsonl"
    p.write_text('["not", "an", "object"]\n', encoding="utf-8")
    with pytest.raises(CorpusError) as e:
        load_corpus(str(p))
    assert "line 1" in _one_line(e)


def test_jsonl_empty_text_records_are_counted(tmp_path):
    p = tmp_path / "gaps.jsonl"
    p.write_text('{"text": "a"}\n{"text": ""}\n{"text": null}\n{"text": "b"}\n', encoding="utf-8")
    c = load_corpus(str(p))
    assert c.items == ["a", "b"] and c.skipped == 2
    assert any("skipped 2" in w for w in c.warnings)


def test_csv_default_and_custom_column(tmp_path):
    p = tmp_path / "table.csv"
    p.write_text('id,text,other\n1,"hello, world",x\n2,"a ""quoted"" word",y\n,,\n',
                 encoding="utf-8")
    c = load_corpus(str(p))
    assert c.items == ["hello, world", 'a "quoted" word'] and c.name == "table.csv"
    assert load_corpus(str(p), text_column="other").items == ["x", "y"]


def test_csv_multiline_field(tmp_path):
    p = tmp_path / "multi.csv"
    p.write_text('text\n"line one\nline two"\nsecond\n', encoding="utf-8")
    assert load_corpus(str(p)).items == ["line one\nline two", "second"]


def test_csv_wrong_column(tmp_path):
    p = tmp_path / "table.csv"
    p.write_text("id,sentence\n1,hi\n", encoding="utf-8")
    with pytest.raises(CorpusError) as e:
        load_corpus(str(p), text_column="body")
    msg = _one_line(e)
    assert "'body'" in msg and "'sentence'" in msg and "'id'" in msg and "--text-column" in msg


def test_csv_header_only_is_empty(tmp_path):
    p = tmp_path / "empty.csv"
    p.write_text("text\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="no inputs"):
        load_corpus(str(p))


def test_non_utf8_reports_offset_and_fix(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes(b"fine line\ncaf\xe9 au lait\n")
    with pytest.raises(CorpusError) as e:
        load_corpus(str(p))
    msg = _one_line(e)
    assert "UTF-8" in msg and "offset 13" in msg and "line 2" in msg
    assert "re-save the file as UTF-8" in msg


def test_non_utf8_jsonl_and_csv_too(tmp_path):
    for name in ("x.jsonl", "x.csv"):
        p = tmp_path / name
        p.write_bytes(b'text\n\xff\xfe\n')
        with pytest.raises(CorpusError, match="re-save the file as UTF-8"):
            load_corpus(str(p))


@pytest.mark.parametrize("content", [b"", b"   \n\n\t \r\n  "])
@pytest.mark.parametrize("ext", ["txt", "jsonl"])
def test_empty_and_whitespace_only(tmp_path, content, ext):
    p = tmp_path / f"empty.{ext}"
    p.write_bytes(content)
    with pytest.raises(CorpusError) as e:
        load_corpus(str(p))
    assert "no inputs" in _one_line(e)


def test_unknown_extension_lists_supported(tmp_path):
    p = tmp_path / "corpus.docx"
    p.write_bytes(b"PK")
    with pytest.raises(CorpusError) as e:
        load_corpus(str(p))
    msg = _one_line(e)
    assert ".docx" in msg
    for ext in (".txt", ".jsonl", ".csv", ".png"):
        assert ext in msg


def test_missing_path(tmp_path):
    with pytest.raises(CorpusError) as e:
        load_corpus(str(tmp_path / "nope.txt"))
    msg = _one_line(e)
    assert "not found" in msg and "nope.txt" in msg


def test_oversized_file(tmp_path, monkeypatch):
    p = tmp_path / "big.txt"
    p.write_text("x" * 200 + "\n", encoding="utf-8")
    monkeypatch.setattr(corpus_mod, "MAX_CORPUS_BYTES", 100)
    with pytest.raises(CorpusError) as e:
        load_corpus(str(p))
    msg = _one_line(e)
    assert "limit" in msg and "split" in msg and "--max-inputs" in msg


def test_default_limit_is_200_mb():
    assert corpus_mod.MAX_CORPUS_BYTES == 200_000_000


def test_max_inputs_caps_and_warns(tmp_path):
    p = tmp_path / "many.txt"
    p.write_text("\n".join(f"line {i}" for i in range(10)) + "\n", encoding="utf-8")
    c = load_corpus(str(p), max_inputs=4)
    assert c.items == [f"line {i}" for i in range(4)] and len(c.labels) == 4
    assert len(c.warnings) == 1 and "dropped 6" in c.warnings[0]
    assert load_corpus(str(p), max_inputs=10).warnings == []
    assert c.hash != load_corpus(str(p)).hash


@pytest.mark.parametrize("bad", [0, -3])
def test_max_inputs_must_be_positive(tmp_path, bad):
    p = tmp_path / "a.txt"
    p.write_text("a\n", encoding="utf-8")
    with pytest.raises(CorpusError, match="--max-inputs"):
        load_corpus(str(p), max_inputs=bad)


def test_text_hash_stable_and_content_sensitive(tmp_path):
    p = tmp_path / "h.txt"
    p.write_text("alpha\nbeta\n", encoding="utf-8")
    h1 = load_corpus(str(p)).hash
    assert load_corpus(str(p)).hash == h1
    p.write_text("alpha\n\nbeta  \n", encoding="utf-8")  # same inputs, different file
    assert load_corpus(str(p)).hash == h1
    p.write_text("alpha\nbeta!\n", encoding="utf-8")
    assert load_corpus(str(p)).hash != h1
    p.write_text("alphabeta\n", encoding="utf-8")  # separators matter
    assert load_corpus(str(p)).hash != h1


# ----------------------------------------------------------------------------- image folders

def _save(path, size=(32, 24), colour=(10, 200, 30), mode="RGB"):
    Image.new(mode, size, colour).save(path)


def test_image_folder_sorted_rgb(tmp_path):
    d = tmp_path / "pics"
    d.mkdir()
    _save(d / "b.png", colour=(0, 0, 255))
    _save(d / "a.jpg", colour=(255, 0, 0))
    _save(d / "c.bmp", mode="L", colour=128)
    _save(d / "d.png", mode="RGBA", colour=(0, 0, 0, 0))  # fully transparent → white
    (d / "readme.md").write_text("not an image", encoding="utf-8")
    (d / "sub").mkdir()
    _save(d / "sub" / "e.png")  # not recursive
    c = load_corpus(str(d))
    assert c.kind == "image" and c.name == "pics"
    assert c.labels == ["a.jpg", "b.png", "c.bmp", "d.png"]
    assert all(im.mode == "RGB" for im in c.items)
    assert c.items[0].size == (32, 24)
    assert np.asarray(c.items[2])[0, 0].tolist() == [128, 128, 128]
    assert np.asarray(c.items[3])[0, 0].tolist() == [255, 255, 255]
    assert c.skipped == 0 and c.warnings == []


def test_image_folder_with_corrupt_file(tmp_path):
    d = tmp_path / "pics"
    d.mkdir()
    _save(d / "good.png")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff this is not really a jpeg")
    c = load_corpus(str(d))
    assert len(c.items) == 1 and c.labels == ["good.png"]
    assert c.skipped == 1
    assert len(c.warnings) == 1 and "broken.jpg" in c.warnings[0] and "skipped 1" in c.warnings[0]


def test_image_folder_none_decodable(tmp_path):
    d = tmp_path / "pics"
    d.mkdir()
    (d / "x.png").write_bytes(b"garbage")
    (d / "y.gif").write_bytes(b"")
    with pytest.raises(CorpusError) as e:
        load_corpus(str(d))
    msg = _one_line(e)
    assert "x.png" in msg and "y.gif" in msg


def test_image_folder_without_images(tmp_path):
    d = tmp_path / "texts"
    d.mkdir()
    (d / "a.txt").write_text("hello\n", encoding="utf-8")
    with pytest.raises(CorpusError) as e:
        load_corpus(str(d))
    assert ".png" in _one_line(e)


def test_image_folder_max_inputs_and_hash(tmp_path):
    d = tmp_path / "pics"
    d.mkdir()
    for i in range(5):
        _save(d / f"{i}.png", colour=(i * 40, 0, 0))
    full = load_corpus(str(d))
    capped = load_corpus(str(d), max_inputs=2)
    assert capped.labels == ["0.png", "1.png"]
    assert len(capped.warnings) == 1 and "dropped 3" in capped.warnings[0]
    assert load_corpus(str(d)).hash == full.hash
    _save(d / "4.png", colour=(0, 0, 1))  # one pixel value changes → hash changes
    assert load_corpus(str(d)).hash != full.hash


# ----------------------------------------------------------------------------- demo corpora

def test_demo_corpus_size_and_variety():
    c = load_corpus("demo")
    assert c.name == "demo" and c.kind == "text" and c.skipped == 0 and c.warnings == []
    assert corpus_mod.DEMO_CORPUS_PATH.is_file()
    assert len(c.items) >= 250
    assert len(set(c.items)) == len(c.items)
    words = [len(t.split()) for t in c.items]
    assert 6000 <= sum(words) <= 8000
    assert min(words) <= 3 and max(words) >= 80
    assert sum(w >= 80 for w in words) >= 5          # a few paragraphs
    assert sum(t.rstrip().endswith("?") for t in c.items) >= 15   # questions
    assert sum('"' in t for t in c.items) >= 15      # quotations
    assert sum(bool(re.search(r"\d", t)) for t in c.items) >= 30   # numbers and dates
    assert sum("(" in t for t in c.items) >= 10      # parentheticals / code / maths
    assert any("trophy" in t and "suitcase" in t for t in c.items)
    assert all(t == t.rstrip() and t.strip() for t in c.items)


def test_demo_max_inputs():
    c = load_corpus("demo", max_inputs=5)
    assert len(c.items) == 5 and "dropped" in c.warnings[0]


@pytest.fixture(scope="module")
def demo_images_twice():
    return load_corpus("demo-images"), load_corpus("demo-images")


def test_demo_images_count_and_format(demo_images_twice):
    c, _ = demo_images_twice
    assert c.name == "demo-images" and c.kind == "image"
    assert 30 <= len(c.items) <= 40
    assert c.warnings == []  # every sample image is available offline here
    assert len(c.labels) == len(c.items) and len(set(c.labels)) == len(c.labels)
    for im in c.items:
        assert isinstance(im, Image.Image) and im.mode == "RGB"
        assert min(im.size) >= 224
    joined = " ".join(c.labels)
    for want in ("astronaut", "china", "flower", "stripes", "checkerboard", "gradient", "flat"):
        assert want in joined
    assert sum("stripes" in lab for lab in c.labels) >= 8


def test_demo_images_deterministic(demo_images_twice):
    a, b = demo_images_twice
    assert a.hash == b.hash and a.labels == b.labels
    assert all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(a.items, b.items))


def test_image_hash_changes_with_content(demo_images_twice):
    c, _ = demo_images_twice
    items = [im.copy() for im in c.items]
    items[-1].putpixel((0, 0), (1, 2, 3))
    assert corpus_mod._hash_images(items) != c.hash
    assert corpus_mod._hash_images([im.copy() for im in c.items]) == c.hash


def test_demo_images_never_download(monkeypatch):
    """With sockets disabled, the demo images still load completely."""
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network disabled in test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    from precompute.demo_images import demo_images_with_missing

    pairs, missing = demo_images_with_missing()
    assert missing == [] and 30 <= len(pairs) <= 40
