"""A JPEG's marker segments, walked as libjpeg walks them: the checks on the file's structure
that libjpeg-turbo's API does not expose (scans counted, scans complete, EXIF present), and
its header rebuilt without the oddities libjpeg reads through.

Header oddities: libjpeg warns "Corrupt JPEG data" about junk bytes between two marker
segments (an APP segment whose length is short, editors' padding, a stuffed `FF 00`) and an
ICC profile whose chunks do not add up (one repeated after SOF), and decodes the picture
whole, as Pillow does. None touches the scans. `repaired_header` rewrites the header the way
libjpeg walks it: the same segments in the same order, without the skipped bytes, and
without an ICC profile libjpeg cannot assemble (it is not used for the pixels: libjpeg, like
Pillow, leaves colour management to the caller). The scans are left as they are, so a strict
decode of the result still refuses any damage in them, and decodes the pixels libjpeg
decodes from the odd file.
"""

from __future__ import annotations

import re

# Start-of-frame markers that libjpeg decodes: baseline/extended, progressive (Huffman and
# arithmetic coding).
_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC9, 0xCA}
_PROGRESSIVE_SOF = {0xC2, 0xCA}

# A scan bomb: libjpeg passes over every block of the image for each scan, however little
# data the scan holds (a progressive scan can end every block with one short EOB run). 883
# tiny scans make a valid 162 KB 7000x7000 JPEG that takes 7.4 s to decode; libjpeg-turbo's
# answer is a scan limit (djpeg -maxscans), which simplejpeg does not expose. libjpeg's
# standard progressive scripts use about 10 scans, mozjpeg's optimised ones a few dozen: 100
# leaves ample room, and 100 such scans at 7000x7000 cost ~0.6 s, as a real image that size
# does anyway.
MAX_SCANS = 100
# Marker segments walked to count scans exactly: a real file has a handful of header
# segments and one or two (DHT, SOS) per scan; more is a file built to make the walk slow.
_MAX_SEGMENTS = 4 * MAX_SCANS
# A marker: FF and a code. In entropy-coded data FF is followed by 00 (a stuffed FF) or by a
# restart marker D0-D7, both part of the scan; FF FF is fill before a marker.
_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_STANDALONE = {0x01, *range(0xD0, 0xDA)}  # TEM, RSTn, SOI, EOI: no length field
_SOI, _EOI, _SOS, _APP1, _APP2 = 0xD8, 0xD9, 0xDA, 0xE1, 0xE2
_ICC = b"ICC_PROFILE\x00"  # then the chunk's sequence number (from 1) and the chunk count
_MAX_HEADER_SEGMENTS = 1000  # no real header has as many: a file built to make the walk slow


def scans_over_limit(data: bytes) -> bool:
    """Whether libjpeg would read more than MAX_SCANS scans: SOS markers from SOI to EOI,
    each segment skipped by its length, each scan's data up to the next marker. A walk past
    _MAX_SEGMENTS segments counts as over: no real JPEG has that many."""
    scans, at = 0, 2
    for _ in range(_MAX_SEGMENTS):
        if (found := _MARKER.search(data, at)) is None:
            return False
        at, marker = found.start(), data[found.start() + 1]
        if marker == _EOI:  # what follows is not this image
            return False
        scans += marker == _SOS
        if scans > MAX_SCANS:
            return True
        at += 2 if marker in _STANDALONE else 2 + int.from_bytes(data[at + 2 : at + 4], "big")
    return True


def scans_complete(data: bytes) -> bool:
    """Whether the scans bring every coefficient of every component to full precision.

    The one cut libjpeg cannot see: the format lets a file end between two scans, so a
    progressive JPEG cut there with an EOI appended decodes, silently, to a blurred picture
    (and a non-interleaved sequential one to a picture missing a colour). The common file,
    sequential with one scan of all components, is settled at its first scan header.
    """
    found = _first_scan(data)
    if found is None:
        return True  # headers we cannot walk; libjpeg has read them, let its verdict stand
    at, components, progressive = found
    missing = dict.fromkeys(components, (1 << 64) - 1)  # per component, a bit per coefficient
    while at >= 0 and any(missing.values()):
        # SOS: Ns at +4, then (id, tables) per component, then Ss, Se, Ah|Al.
        count = data[at + 4] if at + 4 < len(data) else 0
        header = data[at + 5 : at + 8 + 2 * count]
        if count and len(header) == 3 + 2 * count:  # else not a scan header: look further
            first, last, approximation = header[-3:] if progressive else (0, 63, 0)
            if approximation & 0x0F == 0:  # Al = 0: coefficients first..last are now whole
                for component in set(header[: 2 * count : 2]) & missing.keys():
                    missing[component] &= ~((1 << (last + 1)) - (1 << first))
        # The next scan: FF DA cannot occur inside entropy-coded data (FF is stuffed as FF 00).
        at = data.find(b"\xff\xda", at + 2) if any(missing.values()) else -1
    return not any(missing.values())


def one_scan_of_all(data: bytes) -> bool:
    """Whether the JPEG is sequential and its first scan holds every component: then libjpeg
    reads that one scan and refuses another ("Didn't expect more than one scan"), so the file
    cannot be a scan bomb. Most cameras' and encoders' files are such."""
    found = _first_scan(data)
    if found is None:
        return False
    at, components, progressive = found
    count = data[at + 4] if at + 4 < len(data) else 0
    return not progressive and set(data[at + 5 : at + 5 + 2 * count : 2]) == components


def _first_scan(data: bytes) -> tuple[int, set[int], bool] | None:
    """(where the first SOS is, the frame's component ids, whether it is progressive), the
    header segments walked by their lengths; None where they cannot be walked."""
    components: set[int] = set()
    progressive = False
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF and data[at + 1] != _SOS:
        marker, length = data[at + 1], int.from_bytes(data[at + 2 : at + 4], "big")
        if marker in _SOF_MARKERS:  # Nf at +9, then 3 bytes per component, its id first
            components = set(data[at + 10 : at + 10 + 3 * data[at + 9] : 3])
            progressive = marker in _PROGRESSIVE_SOF
        at += 2 + length
    if at + 4 > len(data) or data[at] != 0xFF or not components:
        return None
    return at, components, progressive


def has_exif(data: bytes) -> bool:
    """Whether the JPEG has an EXIF segment (APP1 "Exif") before its image data."""
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker, length = data[at + 1], int.from_bytes(data[at + 2 : at + 4], "big")
        if marker == _SOS:  # the headers are over
            return False
        if marker == _APP1 and data[at + 4 : at + 10] == b"Exif\x00\x00":
            return True
        at += 2 + length
    return True  # headers we cannot walk: let Pillow look


def repaired_header(data: bytes) -> tuple[bytes, tuple[str, ...]] | None:
    """The JPEG with its header rebuilt as libjpeg reads it, and a note per oddity; None when
    nothing in the header is odd, or when it cannot be walked (cut short, no scan)."""
    segments, notes, at = [data[:2]], [], 2
    for _ in range(_MAX_HEADER_SEGMENTS):
        found = _next_marker(data, at)
        if found is None:
            return None
        at, marker, skipped = found
        if skipped:
            notes.append(f"JPEG header: {skipped} extraneous bytes before marker 0x{marker:02x}")
        if marker in (_SOI, _EOI):  # a second image, or none
            return None
        if marker in _STANDALONE:  # libjpeg passes over them
            segments.append(data[at - 2 : at])
            continue
        if at + 2 > len(data):
            return None
        length = int.from_bytes(data[at : at + 2], "big")
        if length < 2 or at + length > len(data):
            return None
        if marker == _SOS:  # the headers are over: the scans follow as they are
            icc = [s for s in segments if _is_icc(s)]
            if icc and not _icc_readable(icc):
                segments = [s for s in segments if not _is_icc(s)]
                notes.append("JPEG header: an ICC profile libjpeg cannot assemble (ignored)")
            if not notes:
                return None
            return b"".join(segments) + data[at - 2 :], tuple(notes)
        segments.append(data[at - 2 : at + length])
        at += length
    return None


def _next_marker(data: bytes, at: int) -> tuple[int, int, int] | None:
    """(position after the marker, its code, bytes skipped before it), as libjpeg's
    next_marker: bytes up to an FF are skipped, FF fill is not counted, and an FF 00 pair
    (a stuffed zero, which has no place in a header) is skipped too."""
    skipped = 0
    while True:
        ff = data.find(b"\xff", at)
        if ff < 0:
            return None
        skipped += ff - at
        at = ff
        while at < len(data) and data[at] == 0xFF:
            at += 1
        if at >= len(data):
            return None
        if data[at] != 0:
            return at + 1, data[at], skipped
        skipped += 2
        at += 1


def _is_icc(segment: bytes) -> bool:
    """An APP2 segment libjpeg takes for an ICC chunk: the signature, a number and a count."""
    return segment[1] == _APP2 and segment[4:].startswith(_ICC) and len(segment) >= 18


def _icc_readable(chunks: list[bytes]) -> bool:
    """As libjpeg's jpeg_read_icc_profile: every chunk gives the same count, and their
    sequence numbers are 1 to that count, each once."""
    at = 4 + len(_ICC)
    count = chunks[0][at + 1]
    same_count = all(chunk[at + 1] == count for chunk in chunks)
    return same_count and sorted(chunk[at] for chunk in chunks) == list(range(1, count + 1))
