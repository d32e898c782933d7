"""Real corpus files: any text extension, compressed formats, and a clear error for what is not text."""

import bz2
import gzip
import json
import lzma

import pytest
import zstandard

from mlmkit.data.sources import file_builder, load_any, load_text_corpus
from mlmkit.errors import UserError

LINES = ["the cat likes the morning train", "a dog waits for the new station", "our team admires rainy afternoons"]
COMPRESS = {"": lambda b: b, ".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress,
            ".zst": lambda b: zstandard.ZstdCompressor().compress(b)}
FORMATS = {
    ".txt": "\n".join(LINES) + "\n",
    ".jsonl": "".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(LINES)),
    ".csv": "id,text\n" + "".join(f"{i},{t}\n" for i, t in enumerate(LINES)),
}


def _write(path, data: bytes, compression: str = ""):
    path = path.with_name(path.name + compression)
    path.write_bytes(COMPRESS[compression](data))
    return path


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("compression", list(COMPRESS))
@pytest.mark.parametrize("suffix", list(FORMATS))
def test_every_format_reads_compressed_or_not(tmp_path, suffix, compression, streaming):
    path = _write(tmp_path / f"corpus{suffix}", FORMATS[suffix].encode(), compression)
    texts = [row["text"] for row in load_text_corpus(str(path), streaming=streaming)]
    assert texts == LINES


@pytest.mark.parametrize("name", ["corpus", "GPL-3", "notes.md", "train.log", "README.rst.gz", "licence.bz2"])
def test_plain_text_of_any_extension_is_read_as_lines(tmp_path, name):
    compression = next((c for c in COMPRESS if c and name.endswith(c)), "")
    path = tmp_path / name.removesuffix(compression)
    path = _write(path, ("\n".join(LINES) + "\n\n").encode(), compression)
    assert file_builder(str(path)) == "text"
    assert load_text_corpus(str(path))["text"] == LINES  # the empty line is dropped


@pytest.mark.parametrize("data, compression, fragment", [
    (bytes(range(256)) * 4, "", "binary file, not text"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "", "binary file, not text"),
    ("caf\xe9 cr\xe8me and more text".encode("latin-1"), "", "not UTF-8 text (byte 0xe9 at offset 3)"),
    (bytes(range(256)) * 4, ".gz", "binary file, not text"),
])
def test_binary_or_foreign_encoding_is_a_clear_error(tmp_path, data, compression, fragment):
    path = _write(tmp_path / "data.bin", data, compression)
    with pytest.raises(UserError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        load_text_corpus(str(path))


def test_damaged_compressed_file_and_compressed_parquet(tmp_path):
    fake = tmp_path / "corpus.txt.gz"
    fake.write_bytes(b"plain text, not gzip")
    with pytest.raises(UserError, match="not a valid .gz file"):
        load_text_corpus(str(fake))
    parquet = tmp_path / "table.parquet.zst"
    parquet.write_bytes(b"PAR1")
    with pytest.raises(UserError, match="parquet files compress their columns themselves"):
        load_any(str(parquet))


def test_utf8_character_cut_by_the_sniff_window_is_still_text(tmp_path):
    path = tmp_path / "accents"
    path.write_bytes(("x" * 8191 + "é more text\n").encode())  # 'é' straddles byte 8192
    assert file_builder(str(path)) == "text"


def test_directory_reads_its_text_files_and_skips_binary_and_hidden_ones(tmp_path):
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(FORMATS[".jsonl"].encode()))
    (tmp_path / "b.jsonl").write_text(FORMATS[".jsonl"])
    (tmp_path / "notes.md").write_text("a note that is not part of the json corpus\n")
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "c.jsonl").write_text(json.dumps({"text": "hidden"}) + "\n")
    assert sorted(load_text_corpus(str(tmp_path))["text"]) == sorted(LINES * 2)


def test_mixed_formats_given_explicitly_are_refused(tmp_path):
    (tmp_path / "a.csv").write_text(FORMATS[".csv"])
    (tmp_path / "b.txt").write_text(FORMATS[".txt"])
    with pytest.raises(UserError, match=r"mix formats \(csv, text\)"):
        load_any(str(tmp_path / "[ab].*"))
