"""Odd headers are kept, damaged scans are not: a corpus built here from good JPEGs.

Header cases, shaped like the real files of Pillow's test suite that libjpeg warns about and
decodes whole (junk before DQT, `FF 00` in the header, a truncated APP14, a Photoshop APP13
whose length is short, an ICC chunk repeated after SOF): each decodes to exactly the pixels
of the same file without its oddity, at full size and at a draft scale, and says what was
odd. Scan cases (cut mid-scan with an EOI, flipped bytes libjpeg notices, junk before a
restart marker): each is a DecodeError naming the damage, with or without a header oddity in
front of it.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable

import numpy as np
import pytest
import simplejpeg
from PIL import Image

from motoray import imageio
from motoray.imageio import DecodeError, decode_image, load_image
from tests.test_imageio_damage import CORPUS, EOI, SIZE, _assert_rejected, _scan_span, _sources

JPEGS = [name for name in _sources() if name.endswith(".jpg")]


def _segments(data: bytes) -> list[tuple[int, int, int]]:
    """(marker, offset, length field) of every header segment, up to the first scan."""
    found, at = [], 2
    while data[at + 1] != 0xDA:
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        found.append((data[at + 1], at, length))
        at += 2 + length
    return found


def _offset(data: bytes, markers: int | tuple[int, ...], after: bool = False) -> int:
    """Where the first segment of `markers` starts (or, `after`, where the one after it does)."""
    markers = markers if isinstance(markers, tuple) else (markers,)
    _, at, length = next(s for s in _segments(data) if s[0] in markers)
    return at + 2 + length if after else at


SOF = (0xC0, 0xC1, 0xC2)


def _segment(marker: int, body: bytes, short_by: int = 0) -> bytes:
    """A marker segment whose length field is `short_by` too small (0: right)."""
    return bytes([0xFF, marker]) + struct.pack(">H", 2 + len(body) - short_by) + body


ADOBE = b"Adobe" + struct.pack(">HHHB", 100, 0, 0, 1)  # APP14: version, flags, transform 1
PHOTOSHOP = b"Photoshop 3.0\x00" + b"8BIM\x04\x04\x00\x00\x00\x00\x00\x10" + bytes(range(1, 17))
ICC_CHUNK = b"ICC_PROFILE\x00\x01\x01" + b"profile"  # chunk 1 of 1


def _insert(data: bytes, at: int, what: bytes) -> bytes:
    return data[:at] + what + data[at:]


def _truncated_app14(data: bytes) -> tuple[bytes, bytes, str]:
    """The file's Adobe APP14 (CMYK files have one; else one is added), its length leaving
    out the colour transform byte."""
    adobe = next((s for s in _segments(data) if s[0] == 0xEE), None)
    if adobe is None:
        data = _insert(data, _offset(data, 0xDB), _segment(0xEE, ADOBE))
        adobe = next(s for s in _segments(data) if s[0] == 0xEE)
    _, at, length = adobe
    odd = data[: at + 2] + struct.pack(">H", length - 1) + data[at + 4 :]
    return odd, data, "1 extraneous bytes before marker 0x"


# case -> (odd file, the same file whose oddity is repaired, the note's words) from a good one.
HEADER_CASES: dict[str, Callable[[bytes], tuple[bytes, bytes, str]]] = {
    "junk_before_dqt": lambda d: (
        _insert(d, _offset(d, 0xDB), b"hello"),
        d,
        "5 extraneous bytes before marker 0xdb",
    ),
    "ff00_in_header": lambda d: (
        _insert(d, _offset(d, 0xDB), b"\xff\x00\x00\x02"),
        d,
        "4 extraneous bytes before marker 0xdb",
    ),
    "truncated_app14": lambda d: _truncated_app14(d),
    "broken_app13": lambda d: (  # Photoshop's resource block, its length 16 short
        _insert(d, 2, _segment(0xED, PHOTOSHOP, short_by=16)),
        _insert(d, 2, _segment(0xED, PHOTOSHOP)),
        "16 extraneous bytes before marker 0x",
    ),
    "icc_after_sof": lambda d: (  # chunk 1 of 1 twice: before the frame header and after it
        _insert(
            _insert(d, _offset(d, SOF, after=True), _segment(0xE2, ICC_CHUNK)),
            2,
            _segment(0xE2, ICC_CHUNK),
        ),
        _insert(d, 2, _segment(0xE2, ICC_CHUNK)),
        "ICC profile libjpeg cannot assemble (ignored)",
    ),
}
HEADER_CORPUS = [(source, case) for source in JPEGS for case in HEADER_CASES]


@pytest.mark.parametrize(
    ("source", "case"), HEADER_CORPUS, ids=[f"{s}-{c}" for s, c in HEADER_CORPUS]
)
def test_a_header_oddity_is_kept_with_the_repaired_files_pixels(source: str, case: str) -> None:
    odd, repaired, words = HEADER_CASES[case](_sources()[source])
    with pytest.raises(ValueError, match=r"^Corrupt JPEG data: "):  # strict libjpeg refuses it
        simplejpeg.decode_jpeg_header(odd)
    assert decode_image(repaired).notes == ()
    for size in (None, SIZE):
        kept = decode_image(odd, size)
        np.testing.assert_array_equal(kept.image, load_image(repaired, size))
        [note] = kept.notes
        assert note.startswith("JPEG header: ") and words in note, note


def test_an_odd_file_decodes_as_pillow_decodes_it_and_the_note_is_libjpegs_warning() -> None:
    frame = _sources()["pillow.jpg"]
    odd, _, _ = HEADER_CASES["junk_before_dqt"](frame)
    pillow = np.asarray(Image.open(io.BytesIO(odd)).convert("RGB"))
    np.testing.assert_array_equal(load_image(odd), pillow)
    with pytest.raises(ValueError) as libjpeg:
        simplejpeg.decode_jpeg(odd, "RGB")
    assert decode_image(odd).notes == (f"JPEG header: {str(libjpeg.value).split(': ', 1)[1]}",)


# --- damage inside the scans stays a failure, odd header or not -------------------------------


def _cut_mid_scan(data: bytes) -> bytes:
    start, end = _scan_span(data)
    return data[: (start + end) // 2] + EOI


def _warned_flip(data: bytes) -> tuple[bytes, str]:
    """The first of a seeded series of byte flips in the scan that libjpeg warns about."""
    start, end = _scan_span(data)
    rng = np.random.default_rng(7)
    for position in rng.integers(start, end, 200):
        flipped = bytearray(data)
        flipped[position] ^= 0xFF
        try:
            simplejpeg.decode_jpeg(bytes(flipped), "RGB")
        except ValueError as e:
            if str(e).startswith(imageio._DAMAGE_WARNINGS):
                return bytes(flipped), str(e).removeprefix("Corrupt JPEG data: ")
    raise AssertionError("no flip libjpeg warns about")


def _junk_before_restart(data: bytes) -> bytes:
    """Bytes in front of the third restart marker of the scan (a desynchronised interval)."""
    start, _ = _scan_span(data)
    at = start
    for _ in range(3):
        at = next(
            i for i in range(at + 1, len(data)) if data[i] == 0xFF and 0xD0 <= data[i + 1] <= 0xD7
        )
    return _insert(data, at, b"junk")


def test_damage_inside_the_scans_is_a_failure_that_names_it() -> None:
    sources = _sources()
    cut = _assert_rejected(_cut_mid_scan(sources["pillow.jpg"]), "pillow.jpg")
    assert cut == "corrupt JPEG: premature end of data segment (libjpeg warning)"
    for name in ("pillow.jpg", "progressive.jpg", "restart_markers.jpg"):
        flipped, warning = _warned_flip(sources[name])
        assert warning.lower() in _assert_rejected(flipped, name).lower()
    desynced = _assert_rejected(_junk_before_restart(sources["restart_markers.jpg"]), "x.jpg")
    assert desynced.startswith("corrupt JPEG: 4 extraneous bytes before marker 0xd")
    assert desynced.endswith("(libjpeg warning)")


@pytest.mark.parametrize("case", sorted(HEADER_CASES))
def test_a_header_oddity_does_not_hide_damage_in_the_scans(case: str) -> None:
    """Every way the damaged corpus cuts or breaks a scan, behind each header oddity: still
    refused, on every path."""
    damaged = [(s, d, data) for s, d, data in CORPUS if s in ("pillow.jpg", "progressive.jpg")]
    assert len(damaged) > 20
    for source, _, data in damaged:
        odd, _, _ = HEADER_CASES[case](data)
        _assert_rejected(odd, source)
    odd, _, _ = HEADER_CASES[case](_junk_before_restart(_sources()["restart_markers.jpg"]))
    assert "extraneous bytes before marker 0xd" in _assert_rejected(odd, "restart_markers.jpg")


def test_a_header_the_walk_cannot_finish_is_refused_as_before() -> None:
    data = _sources()["pillow.jpg"]
    odd, _, _ = HEADER_CASES["junk_before_dqt"](data)
    cut_in_header = odd[: _offset(data, 0xC4)]
    with pytest.raises(DecodeError, match=r"^(truncated|corrupt) JPEG"):
        load_image(cut_in_header)


# --- the manifest's notes ----------------------------------------------------------------------


def test_the_worker_notes_what_was_odd_on_every_output_of_the_image(tmp_path) -> None:
    from motoray.config import Config, SourceConfig
    from motoray.pipeline import source, worker
    from motoray.pipeline.jobspec import job_spec
    from motoray.spec import parse_for
    from motoray.storage import MemoryStorage

    clean = _sources()["pillow.jpg"]
    odd, _, words = HEADER_CASES["broken_app13"](clean)
    (tmp_path / "clean.jpg").write_bytes(clean)
    (tmp_path / "odd.jpg").write_bytes(odd)
    config = Config(sources={"frames": SourceConfig(uri=str(tmp_path))})
    body = {"name": "frames", "augmentations": [{"FLIP": {}}], "include_original": True}
    [request] = parse_for(config, body)
    storage, keys = source.list_source(request, config)
    items = source.items(keys, source.place(request, config, keys))
    made = list(worker.outputs(job_spec(request, config, storage, MemoryStorage()), items))
    notes = {(row["source_path"], row["operator"]): row.get("notes") for row, _ in made}
    assert set(notes) == {(k, op) for k in ("clean.jpg", "odd.jpg") for op in ("ORIGINAL", "FLIP")}
    assert notes[("clean.jpg", "FLIP")] is None and notes[("clean.jpg", "ORIGINAL")] is None
    assert words in notes[("odd.jpg", "FLIP")] and words in notes[("odd.jpg", "ORIGINAL")]
    data = {row["source_path"] + row["operator"]: data for row, data in made}
    assert data["odd.jpgFLIP"] == data["clean.jpgFLIP"]  # the same pixels, so the same bytes


def test_the_notes_column_joins_the_manifest_as_if_it_had_been_there_from_the_start(
    monkeypatch,
) -> None:
    """A manifest is written in row groups as results arrive; the first note may come after
    some are written. No note: the manifest has no such column (every other manifest stays
    byte for byte what it was)."""
    import pyarrow.parquet as pq

    from motoray.pipeline import manifest

    monkeypatch.setattr(manifest, "ROW_GROUP_ROWS", 4)
    columns = manifest.manifest_columns(sharded=False)
    rows = [
        {"output_path": f"all/{n}.jpg", "source_path": f"{n}.jpg", "split": "all",
         "operator": "ORIGINAL", "params": "{}", "width": 8, "height": 8, "bytes": 100}
        for n in range(11)
    ]  # fmt: skip
    noted = [*rows[:9], {**rows[9], "notes": "JPEG header: odd"}, rows[10]]

    def written(blocks: list[list[dict]], columns: list[str]) -> bytes:
        writer = manifest.ManifestWriter(columns)
        for block in blocks:
            writer.add(manifest.rows_table(block))
        return writer.finish()

    late = written([noted[:3], noted[3:7], noted[7:]], columns)  # two row groups before it
    assert late == written([noted], [*columns, "notes"])
    table = pq.read_table(io.BytesIO(late))
    assert table.column_names == [*columns, "notes"] and table.num_rows == 11
    assert table["notes"].to_pylist() == [None] * 9 + ["JPEG header: odd", None]
    assert (
        "notes"
        not in pq.read_table(io.BytesIO(written([rows[:5], rows[5:]], columns))).schema.names
    )
