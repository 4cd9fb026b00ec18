"""``GET /docs/runbooks/{name}``: the alert runbooks, served read-only by the API.

Every alert carries a ``runbook_url`` (scripts/promconfig/model.py). A link into a repository
resolves only for whoever can read that repository; the API is already deployed wherever the
alerts are (compose and the local stack publish it on port 5001), so it serves the runbooks at
the same path they have in the repository, and the generator's default base
``http://localhost:5001/docs/runbooks/`` answers where the stack runs.

The runbooks ship inside the package (``api/runbooks`` is docs/runbooks, see pyproject.toml) and
are read once at start into a mapping: a request never touches the file system. A name is
looked up only if it is a plain ``Word.md`` name (:data:`RUNBOOK_NAME`), and only among the
files read, so ``..``, encoded slashes or any other path trick can only ever answer 404.
The body is the Markdown source as ``text/plain``: every browser shows it inline, and its
relative links (``[NoDataFlowing](NoDataFlowing.md)`` in README.md) resolve on the same route.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from types import MappingProxyType
from typing import Final

from aiohttp import web

from api import errors
from api.errors import ApiError, quote

log = logging.getLogger("api")

#: The route, and the path the rule generator's default runbook base points at.
ROUTE: Final = "/docs/runbooks/{name}"
#: A runbook file name: an alert name (or README) and ``.md``; nothing else is ever looked up.
RUNBOOK_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,99}\.md")
#: Runbooks change with a release, not between requests: caches may keep them for 5 minutes.
CACHE_CONTROL: Final = "public, max-age=300"
#: Bound on what is read into memory at start (docs/runbooks is ~150 kB).
MAX_RUNBOOK_BYTES: Final = 256 * 1024

RUNBOOKS: Final = web.AppKey("runbooks", Mapping[str, bytes])


def packaged_runbooks() -> Traversable:
    """The runbook directory shipped with the package (a link to docs/runbooks in a checkout)."""
    return resources.files("api") / "runbooks"


def load_runbooks(directory: Traversable | None = None) -> Mapping[str, bytes]:
    """File name -> contents of every runbook in ``directory`` (default: the packaged ones).

    A missing directory (an install without package data) or an unreadable file is logged and
    not served: the options API must not fail to start over its documentation.
    """
    where = directory if directory is not None else packaged_runbooks()
    if not where.is_dir():
        log.warning("runbooks not found: /docs/runbooks/ answers 404", extra={"path": str(where)})
        return MappingProxyType({})
    found: dict[str, bytes] = {}
    for entry in where.iterdir():
        if not RUNBOOK_NAME.fullmatch(entry.name) or not entry.is_file():
            continue
        try:
            body = entry.read_bytes()
        except OSError as exc:
            log.warning("runbook unreadable, not served",
                        extra={"runbook": entry.name, "error_type": type(exc).__name__, "error": str(exc)})
            continue
        if len(body) > MAX_RUNBOOK_BYTES:
            log.warning("runbook too large, not served",
                        extra={"runbook": entry.name, "bytes": len(body), "limit": MAX_RUNBOOK_BYTES})
            continue
        found[entry.name] = body
    log.debug("runbooks loaded", extra={"count": len(found)})
    return MappingProxyType(dict(sorted(found.items())))


async def runbook(request: web.Request) -> web.Response:
    """``GET /docs/runbooks/{name}``: one runbook's Markdown, or a JSON 404."""
    name = request.match_info["name"]
    if request.query:
        raise ApiError(400, errors.UNKNOWN_PARAMETER, "this route takes no query parameters")
    body = request.app[RUNBOOKS].get(name) if RUNBOOK_NAME.fullmatch(name) else None
    if body is None:
        raise ApiError(404, errors.NOT_FOUND, f"no runbook {quote(name)}")
    return web.Response(body=body, content_type="text/plain", charset="utf-8",
                        headers={"Cache-Control": CACHE_CONTROL})
