"""The OpenAPI 3 document of the API, generated from the code's own limits.

Coins come from the settings, query parameters and their bounds from
:mod:`api.validation`, error codes from :mod:`api.errors`: the document cannot promise
what the code does not check. Tests compare its paths with the application's routes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from api import errors, runbooks, validation
from api.cache import RESULTS
from common.config import Settings
from common.symbols import MAX_SYMBOL_LEN, SYMBOL_RE

RUNBOOK_PATTERN = f"^{runbooks.RUNBOOK_NAME.pattern}$"
_ERROR = {"$ref": "#/components/schemas/Error"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {400: "Invalid input (see error.code)", 404: "Unknown coin, symbol or route",
            503: "Redis unavailable and no recent answer cached (Retry-After)"}
    return {str(s): _json(_ERROR, text[s]) for s in statuses}


def _cache_headers() -> dict[str, Any]:
    return {
        "X-Cache": {"description": "hit, miss or stale", "schema": {"type": "string", "enum": list(RESULTS)}},
        "Age": {"description": "Seconds since the data was read from Redis", "schema": {"type": "integer"}},
        "Warning": {"description": 'Present when stale: 110 - "Response is Stale"',
                    "schema": {"type": "string"}},
    }


def _query_parameters() -> list[dict[str, Any]]:
    schemas: dict[str, dict[str, Any]] = {
        "expiry": {"type": "string", "pattern": validation.EXPIRY_RE.pattern, "example": "27DEC26"},
        "type": {"type": "string", "enum": list(validation.TYPES)},
        "strike_min": {"type": "string", "pattern": validation.STRIKE_RE.pattern, "example": "90000"},
        "strike_max": {"type": "string", "pattern": validation.STRIKE_RE.pattern, "example": "110000"},
        "limit": {"type": "integer", "minimum": 1, "maximum": validation.MAX_LIMIT},
        "offset": {"type": "integer", "minimum": 0, "maximum": validation.MAX_OFFSET, "default": 0},
    }
    return [{"name": name, "in": "query", "required": False, "description": doc, "schema": schemas[name]}
            for name, doc in validation.QUERY_PARAMETERS.items()]


def _schemas() -> dict[str, Any]:
    provenance = {
        "generated_at": {"type": "number", "description": "When this answer was made (epoch s)"},
        "as_of": {"type": "number", "description": "When the data was read from Redis (epoch s)"},
        "last_update": {"type": ["number", "null"], "description": "Arrival of the newest ticker (epoch s)"},
        "staleness_seconds": {"type": ["number", "null"], "description": "generated_at - last_update"},
        "cache": {"type": "string", "enum": list(RESULTS)},
        "stale": {"type": "boolean", "description": "Served from cache because Redis failed"},
    }
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {
            "type": "object", "required": ["code", "message"], "properties": {
                "code": {"type": "string", "enum": list(errors.CODES)}, "message": {"type": "string"}}}}},
        "Option": {
            "type": "object", "description": "The symbol's parts, then every field of the option hash as "
            "stored: Bybit's ticker fields (strings, unconverted) and the ingest's ts/recv_ts (ms, strings).",
            "required": ["symbol", "expiry", "expiry_date", "strike", "type", "settle"],
            "properties": {
                "symbol": {"type": "string", "example": "BTC-27DEC26-100000-C"},
                "expiry": {"type": "string", "example": "27DEC26"},
                "expiry_date": {"type": "string", "format": "date"},
                "strike": {"type": "string", "example": "100000"},
                "type": {"type": "string", "enum": list(validation.TYPES)},
                "settle": {"type": "string", "example": "USDC"},
                "markPrice": {"type": "string"}, "ts": {"type": "string"}, "recv_ts": {"type": "string"},
            },
            "additionalProperties": {"type": "string"},
        },
        "OptionsResponse": {"type": "object", "properties": {
            "coin": {"type": "string"}, "count": {"type": "integer"},
            "total": {"type": "integer", "description": "Options matching the filters before limit/offset"},
            **provenance, "filters": {"type": "object"},
            "options": {"type": "array", "items": {"$ref": "#/components/schemas/Option"}}}},
        "OptionResponse": {"type": "object", "properties": {
            "coin": {"type": "string"}, "symbol": {"type": "string"}, **provenance,
            "option": {"$ref": "#/components/schemas/Option"}}},
        "CoinsResponse": {"type": "object", "properties": {
            "generated_at": {"type": "number"},
            "coins": {"type": "array", "items": {"type": "object", "properties": {
                "coin": {"type": "string"}, "count": {"type": "integer"}, **provenance}}}}},
        "Ready": {"type": "object", "properties": {
            "ready": {"type": "boolean"}, "reason": {"type": "string"},
            "staleness_seconds": {"type": ["number", "null"]}, "max_staleness_seconds": {"type": "number"}}},
    }


def openapi_document(settings: Settings, *, runbook_names: Sequence[str] = ()) -> dict[str, Any]:
    """The whole document for an API serving ``settings.coins`` and the runbook files ``runbook_names``."""
    coin = {"name": "coin", "in": "path", "required": True, "description": "A tracked base coin",
            "schema": {"type": "string", "enum": list(settings.coins)}}
    symbol = {"name": "symbol", "in": "path", "required": True, "description": "An option symbol of the coin",
              "schema": {"type": "string", "pattern": SYMBOL_RE.pattern, "maxLength": MAX_SYMBOL_LEN}}
    ok = "OK"
    runbook = {"name": "name", "in": "path", "required": True,
               "description": "A runbook file: <AlertName>.md, or README.md for the index",
               "schema": {"type": "string", "pattern": RUNBOOK_PATTERN, "enum": list(runbook_names)}}
    ready = {"$ref": "#/components/schemas/Ready"}
    return {
        "openapi": "3.1.0",
        "info": {"title": "Bybit Options Tracker API", "version": "1.0.0",
                 "description": "Latest Bybit option tickers from Redis, read-only. Errors are "
                                "{\"error\": {\"code\", \"message\"}}; only GET and HEAD are allowed."},
        "paths": {
            "/api/options/{coin}": {"get": {
                "summary": "The coin's options, sorted by expiry, strike, type", "operationId": "listOptions",
                "parameters": [coin, *_query_parameters()],
                "responses": {"200": {**_json({"$ref": "#/components/schemas/OptionsResponse"}, ok),
                                      "headers": _cache_headers()}, **_errors(400, 404, 503)}}},
            "/api/options/{coin}/{symbol}": {"get": {
                "summary": "One option", "operationId": "getOption", "parameters": [coin, symbol],
                "responses": {"200": {**_json({"$ref": "#/components/schemas/OptionResponse"}, ok),
                                      "headers": _cache_headers()}, **_errors(400, 404, 503)}}},
            "/api/coins": {"get": {
                "summary": "Tracked coins with option counts and freshness", "operationId": "listCoins",
                "responses": {"200": _json({"$ref": "#/components/schemas/CoinsResponse"}, ok),
                              **_errors(400, 503)}}},
            "/healthz": {"get": {"summary": "Liveness", "operationId": "healthz", "responses": {
                "200": _json({"type": "object", "properties": {"status": {"type": "string"}}}, ok)}}},
            "/readyz": {"get": {
                "summary": "Readiness: Redis reachable and data fresh", "operationId": "readyz",
                "responses": {"200": _json(ready, "Ready"), "503": _json(ready, "Not ready")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics of the API", "operationId": "metrics",
                                 "responses": {"200": {"description": ok, "content": {"text/plain": {}}}}}},
            "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi",
                                      "responses": {"200": _json({"type": "object"}, ok)}}},
            runbooks.ROUTE: {"get": {
                "summary": "An alert's runbook (Markdown source), the target of its runbook_url",
                "operationId": "getRunbook", "parameters": [runbook],
                "responses": {"200": {"description": ok, "content": {"text/plain": {}}},
                              **_errors(400, 404)}}},
        },
        "components": {"schemas": _schemas()},
    }
