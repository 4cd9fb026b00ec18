"""``/openapi.json`` describes exactly the routes served, and no request built from it is a 5xx.

The property test reads the running API's own document, then lets hypothesis build
requests for every route: path parameters and query parameters from the document's enums,
patterns and bounds, mixed with hostile strings (``*``, ``../x``, ``%00``, control
characters, 10 kB blobs, unknown parameters, repeats). Every answer must be below 500 and,
when JSON, an object — an error one with ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from api import errors
from api.app import build_app
from api.routes import OPENAPI
from common import keys
from common.config import load_settings
from tests.fixtures_readers import Layout, ServiceHandle, api_factory, layout, make_symbols
from tests.servers import RedisServer

__all__ = ["api_factory", "layout"]

COINS = ("BTC", "ETH", "SOL")
HOSTILE = ["*", "../x", "..%2Fx", "%00", "%2e%2e", "\x00", "\n", " ", "'", '"', "{coin}", "?", "#",
           "BTC*", "BTC-*", "option:*", "KEYS *", "\u202e", "\U0001f600", "A" * 10_000, "-1", "1e309",
           "NaN", "999999999999999999999", ""]


def test_the_document_lists_every_served_route_and_no_other() -> None:
    settings = load_settings(env={"BYBIT_COINS": ",".join(COINS)})
    app = build_app(settings)
    served = {r.canonical for r in app.router.resources()}
    document = json.loads(app[OPENAPI])
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == served
    for path, item in document["paths"].items():
        assert set(item) == {"get"}, path  # read-only
    listing = document["paths"]["/api/options/{coin}"]["get"]
    coin = next(p for p in listing["parameters"] if p["name"] == "coin")
    assert coin["schema"]["enum"] == list(COINS)
    codes = document["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"]
    assert codes == list(errors.CODES)


@pytest.fixture
def running_api(layout: Layout, redis_server: RedisServer,
                api_factory: Callable[..., ServiceHandle]) -> ServiceHandle:
    """The API over a healthy Redis: a 503 (not ready, Redis down) would be a true server error here."""
    now = time.time()
    layout.options(make_symbols("BTC", 30, seed=7) + make_symbols("ETH", 5, seed=8), now=now)
    layout.stats(**{keys.F_LAST_UPDATE: int(now)})
    return api_factory(redis_url=redis_server.url, coins=COINS)


def text_values() -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(HOSTILE), st.text(max_size=50),
                     st.text(alphabet=st.characters(codec="ascii"), max_size=12))


def path_value(name: str, schema: dict[str, Any]) -> st.SearchStrategy[str]:
    good: list[st.SearchStrategy[str]] = []
    if "enum" in schema:
        good.append(st.sampled_from([str(v) for v in schema["enum"]]))
        good.append(st.sampled_from([str(v).lower() for v in schema["enum"]]))
    if name == "symbol":
        good.append(st.sampled_from(make_symbols("BTC", 30, seed=7) + make_symbols("ETH", 5, seed=8)))
        good.append(st.from_regex(schema["pattern"], fullmatch=True))
    return st.one_of(*good, text_values())


def query_value(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    good: list[st.SearchStrategy[str]] = [text_values()]
    if "enum" in schema:
        good.append(st.sampled_from([str(v) for v in schema["enum"]]))
    if "pattern" in schema:
        good.append(st.from_regex(schema["pattern"], fullmatch=True))
    if schema.get("type") == "integer":
        good.append(st.integers(min_value=-5, max_value=schema.get("maximum", 100) + 5).map(str))
    return st.one_of(*good)


@st.composite
def requests(draw: st.DrawFn, document: dict[str, Any]) -> str:
    """A request target for one of the document's routes."""
    template: str = draw(st.sampled_from(sorted(document["paths"])))
    operation = document["paths"][template]["get"]
    target = template
    query: list[tuple[str, str]] = []
    for param in operation.get("parameters", []):
        if param["in"] == "path":
            value = draw(path_value(param["name"], param["schema"]))
            raw = draw(st.booleans()) and value.isascii() and value.isprintable() and " " not in value \
                and "?" not in value and "#" not in value
            segment = value if raw else urllib.parse.quote(value, safe="")
            target = target.replace("{" + param["name"] + "}", segment)
        elif draw(st.booleans()):
            query.append((param["name"], draw(query_value(param["schema"]))))
    if draw(st.integers(0, 9)) == 0:
        query.append((draw(text_values()), draw(text_values())))  # unknown or repeated
    if query:
        target += "?" + urllib.parse.urlencode(query)
    return target


def fetch_document(handle: ServiceHandle) -> dict[str, Any]:
    host, port = handle.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "/openapi.json")
    doc: dict[str, Any] = json.loads(conn.getresponse().read())
    conn.close()
    return doc


def test_no_request_built_from_the_document_gets_a_server_error(running_api: ServiceHandle) -> None:
    document = fetch_document(running_api)
    host, port = running_api.url.removeprefix("http://").split(":")
    seen: dict[int, int] = {}

    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])
    @given(target=requests(document), method=st.sampled_from(["GET", "GET", "GET", "HEAD"]))
    def check(target: str, method: str) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            conn.request(method, target)
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        seen[resp.status] = seen.get(resp.status, 0) + 1
        assert resp.status < 500, (target[:200], resp.status, body[:300])
        if method == "GET" and resp.getheader("Content-Type", "").startswith("application/json"):
            doc = json.loads(body)
            assert isinstance(doc, dict)
            if resp.status >= 400:
                assert doc["error"]["code"] in errors.CODES, doc

    check()
    assert seen.get(200, 0) > 20, seen  # the generator reaches real answers, not only errors
    assert sum(n for status, n in seen.items() if 400 <= status < 500) > 20, seen
    assert "Traceback" not in running_api.log_text()
