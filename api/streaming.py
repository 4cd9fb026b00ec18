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
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson
from aiohttp import web

log = logging.getLogger("api")

CHUNK: Final = 64 * 1024


def json_parts(head: Mapping[str, Any], name: str, raw_json: bytes) -> tuple[bytes, bytes, bytes]:
    """``head`` as a JSON object with one more member ``name`` whose value is already JSON."""
    return orjson.dumps(head)[:-1] + b',"' + name.encode() + b'":', raw_json, b"}"


async def send_json(request: web.Request, parts: tuple[bytes, ...], *, headers: Mapping[str, str],
                    on_gone: Callable[[], None]) -> web.StreamResponse:
    """Stream ``parts`` (together one JSON document) as a 200 answer; HEAD gets the headers only.

    A client that goes away mid-answer is counted (``on_gone``) and logged at debug level:
    its connection is closed, nothing else to do.
    """
    response = web.StreamResponse(headers=dict(headers))
    response.content_type = "application/json"
    response.content_length = sum(len(p) for p in parts)
    try:
        await response.prepare(request)
        if request.method != "HEAD":
            for part in parts:
                view = memoryview(part)
                for start in range(0, len(view), CHUNK):
                    await response.write(view[start:start + CHUNK])
        await response.write_eof()
    except ConnectionError:  # reset by the peer, or "Connection lost" while waiting to drain
        on_gone()
        log.debug("client went away mid-answer",
                  extra={"path": request.path[:100], "error_type": "client_gone"})
    return response
