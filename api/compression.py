"""gzip answers without compressing the big part per request.

A coin's full answer is ~700 KiB of JSON; gzip makes it ~4x smaller, but compressing it per
request (~13 ms at level 6) would cost more CPU than sending it. The option array is the
same for every request of a cache period, only the small envelope around it differs. So the
array is deflated once per Redis read (:func:`deflate_part`, in a worker thread) and each
answer is a gzip member stitched from independently encoded parts, as pigz does: every part
ends byte-aligned with no reference to earlier data (a sync flush, or stored blocks for the
small envelope), an empty final block ends the stream, and the trailer's CRC-32 is combined
from the parts' CRCs (:mod:`api.crc32`) instead of rescanning the array. Any gzip decoder
reads the result as one ordinary stream.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from api import crc32

#: Level for parts deflated once per cache period (a worker thread; 700 KiB in ~13 ms).
SHARED_LEVEL: Final = 6
#: Level for parts deflated per request (selections), cheap on the event loop.
REQUEST_LEVEL: Final = 1
#: Answers smaller than this go out uncompressed: below it gzip saves little and costs a
#: compressor's set-up (~45 µs) per answer.
MIN_SIZE: Final = 4096
#: Parts up to this size are sent as stored (uncompressed) deflate blocks: envelopes of a few
#: hundred bytes, for which setting up a compressor costs more than the bytes it would save.
STORE_MAX: Final = 2048
#: Parts larger than this are not deflated per request (~1.5 ms on the loop at level 1);
#: an answer holding one goes out uncompressed unless that part was deflated in advance.
REQUEST_MAX: Final = 256 * 1024

#: Magic, deflate, no flags, no mtime, no extra flags, OS unknown (RFC 1952, 2.3).
_HEADER: Final = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
#: A final, empty, fixed-Huffman block: ends a stream of byte-aligned parts (RFC 1951, 3.2.6).
_FINAL_BLOCK: Final = b"\x03\x00"
_STORED_MAX: Final = 0xFFFF  # bytes in one stored block (RFC 1951, 3.2.4)


@dataclass(frozen=True, slots=True)
class Deflated:
    """One part deflated in advance, with what the trailer needs to account for it."""

    data: bytes  # raw deflate, sync-flushed, not final
    crc: int  # CRC-32 of the uncompressed part
    size: int  # length of the uncompressed part
    shift: int  # crc32.shift_operator(size)


def deflate_part(data: bytes, level: int = SHARED_LEVEL) -> Deflated:
    """``data`` deflated so that it can be stitched between other parts of a gzip member."""
    return Deflated(data=_deflate(data, level), crc=zlib.crc32(data), size=len(data),
                    shift=crc32.shift_operator(len(data)))


def _deflate(data: bytes, level: int) -> bytes:
    compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


def _stored(data: bytes) -> bytes:
    """``data`` as non-final stored blocks: no compressor needed, byte-aligned on both ends."""
    out = bytearray()
    for start in range(0, len(data), _STORED_MAX):
        chunk = data[start:start + _STORED_MAX]
        out += b"\x00" + len(chunk).to_bytes(2, "little") + (len(chunk) ^ 0xFFFF).to_bytes(2, "little")
        out += chunk
    return bytes(out)


def gzip_member(parts: Sequence[bytes], deflated: Sequence[Deflated | None]) -> list[bytes]:
    """One gzip member carrying ``b"".join(parts)``, as a list of byte strings to send in order.

    ``deflated[i]`` is :func:`deflate_part` of ``parts[i]`` when done in advance (the shared
    array), or ``None`` to encode the part here: stored when small, else deflated at
    :data:`REQUEST_LEVEL`.
    """
    out = [_HEADER]
    crc = 0
    size = 0
    for part, done in zip(parts, deflated, strict=True):
        if done is not None:
            out.append(done.data)
            crc = crc32.combine(crc, done.crc, done.shift)
        else:
            out.append(_stored(part) if len(part) <= STORE_MAX else _deflate(part, REQUEST_LEVEL))
            crc = zlib.crc32(part, crc)
        size += len(part)
    out.append(_FINAL_BLOCK)
    out.append(crc.to_bytes(4, "little") + (size & 0xFFFFFFFF).to_bytes(4, "little"))
    return out


def can_gzip(parts: Sequence[bytes], deflated: Sequence[Deflated | None]) -> bool:
    """Whether gzip pays for these parts: big enough, and no large part left to deflate on the loop."""
    if sum(len(p) for p in parts) < MIN_SIZE:
        return False
    pairs = zip(parts, deflated, strict=True)
    return all(done is not None or len(part) <= REQUEST_MAX for part, done in pairs)


def accepts_gzip(header: str) -> bool:
    """Whether an ``Accept-Encoding`` value allows gzip (RFC 9110 12.5.3: ``q=0`` refuses)."""
    wildcard: bool | None = None
    for item in header.split(","):
        name, _, params = item.partition(";")
        coding = name.strip().lower()
        allowed = _q(params) > 0
        if coding in ("gzip", "x-gzip"):
            return allowed
        if coding == "*":
            wildcard = allowed
    return bool(wildcard)


def _q(params: str) -> float:
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                return float(value.strip())
            except ValueError:
                return 0.0  # an unreadable weight does not opt in
    return 1.0
