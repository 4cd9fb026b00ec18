"""Sending large JSON answers without copying them per request, at the client's pace.

A coin's full answer is ~700 KiB for 1,000 options. Built as one ``bytes`` per request and
handed to the transport at once, a burst of 100 requests holds ~140 MB (the joined body,
then the transport's copy of what the socket did not take) — over the container's memory
limit. Instead the answer goes out as its parts: the small envelope, the option array
shared by every request of the cache period (a memoryview, never copied here), the closing
brace; in chunks of :data:`CHUNK`, each written only once the transport has drained below
aiohttp's high-water mark. Memory per answer in flight is then a few chunks, whatever the
answer's size or the client's speed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import orjson
from aiohttp import web

from api.compression import Deflated, accepts_gzip, can_gzip, gzip_member

log = logging.getLogger("api")

CHUNK: Final = 64 * 1024


def json_parts(head: Mapping[str, Any], name: str, raw_json: bytes) -> tuple[bytes, bytes, bytes]:
    """``head`` as a JSON object with one more member ``name`` whose value is already JSON."""
    return orjson.dumps(head)[:-1] + b',"' + name.encode() + b'":', raw_json, b"}"


async def send_json(request: web.Request, parts: Sequence[bytes], *, headers: Mapping[str, str],
                    on_gone: Callable[[], None], deflated: Sequence[Deflated | None] | None = None,
                    ) -> web.StreamResponse:
    """Stream ``parts`` (together one JSON document) as a 200 answer; HEAD gets the headers only.

    gzip-encoded when the client accepts it and it pays (see :mod:`api.compression`);
    ``deflated`` holds parts already deflated (``None`` where not). A client that goes away
    mid-answer is counted (``on_gone``) and logged at debug level: its connection is closed,
    nothing else to do.
    """
    response = web.StreamResponse(headers={**headers, "Vary": "Accept-Encoding"})
    response.content_type = "application/json"
    done = list(deflated) if deflated is not None else [None] * len(parts)
    if accepts_gzip(request.headers.get("Accept-Encoding", "")) and can_gzip(parts, done):
        parts = gzip_member(parts, done)
        response.headers["Content-Encoding"] = "gzip"
    response.content_length = sum(len(p) for p in parts)
    try:
        await response.prepare(request)
        if request.method != "HEAD":
            for chunk in chunks(parts):
                await response.write(chunk)
        await response.write_eof()
    except ConnectionError:  # reset by the peer, or "Connection lost" while waiting to drain
        on_gone()
        log.debug("client went away mid-answer",
                  extra={"path": request.path[:100], "error_type": "client_gone"})
    return response


def chunks(parts: Sequence[bytes]) -> list[bytes | memoryview]:
    """``parts`` as writes of at most :data:`CHUNK` bytes: small parts coalesced, large ones sliced.

    Each write is a ``send`` system call; a gzip answer is five parts, three of them a few
    bytes long. Large parts are sliced as views of the shared bytes, never copied.
    """
    out: list[bytes | memoryview] = []
    pending = bytearray()
    for part in parts:
        if len(pending) + len(part) <= CHUNK:
            pending += part
            continue
        if pending:
            out.append(bytes(pending))
            pending.clear()
        if len(part) <= CHUNK:
            pending += part
            continue
        view = memoryview(part)
        out.extend(view[start:start + CHUNK] for start in range(0, len(view), CHUNK))
    if pending:
        out.append(bytes(pending))
    return out
