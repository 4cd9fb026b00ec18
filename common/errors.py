"""The fixed set of error types the ingest counts.

Error types become the ``type`` label of ``bybit_errors_total``; a fixed set keeps
label cardinality bounded no matter what the exchange sends. Anything that does not
fit a named type is counted as ``other`` — never as a raw exception or exchange string.
"""

from __future__ import annotations

from typing import Final

# Frame problems (a bad frame is counted, logged sparingly, dropped, never stored).
BAD_JSON: Final = "bad_json"  # not JSON, or not a JSON object
BAD_TYPE: Final = "bad_type"  # a field has the wrong JSON type (null, number where string...)
MISSING_FIELD: Final = "missing_field"  # a required field is absent or empty
BAD_NUMBER: Final = "bad_number"  # a numeric field does not parse as a finite decimal
BAD_SYMBOL: Final = "bad_symbol"  # symbol not of Bybit's form (e.g. "*", "../x")
UNSUBSCRIBED_SYMBOL: Final = "unsubscribed_symbol"  # well-formed but not ours
BAD_TIMESTAMP: Final = "bad_timestamp"  # ts missing, non-integer or far from now
TOPIC_MISMATCH: Final = "topic_mismatch"  # topic and data.symbol disagree
FRAME_TOO_LARGE: Final = "frame_too_large"
UNKNOWN_MESSAGE: Final = "unknown_message"  # valid JSON the router cannot place

# Connection and upstream problems.
SUBSCRIBE_FAILED: Final = "subscribe_failed"  # topics rejected by the exchange
SUBSCRIBE_UNANSWERED: Final = "subscribe_unanswered"  # topics the exchange never answered (re-requested)
PONG_TIMEOUT: Final = "pong_timeout"
DATA_TIMEOUT: Final = "data_timeout"  # connected, pongs flowing, no data
WS_CLOSED: Final = "ws_closed"  # the connection dropped
WS_CONNECT: Final = "ws_connect"  # could not open a connection
REST_ERROR: Final = "rest_error"  # REST call failed (network, HTTP, retCode)
REST_RATE_LIMITED: Final = "rest_rate_limited"
REDIS_ERROR: Final = "redis_error"
# Deployment problems.
REPLICA_CONFLICT: Final = "replica_conflict"  # another process writes under this INGEST_REPLICA
OTHER: Final = "other"

ERROR_TYPES: Final[tuple[str, ...]] = (
    BAD_JSON,
    BAD_TYPE,
    MISSING_FIELD,
    BAD_NUMBER,
    BAD_SYMBOL,
    UNSUBSCRIBED_SYMBOL,
    BAD_TIMESTAMP,
    TOPIC_MISMATCH,
    FRAME_TOO_LARGE,
    UNKNOWN_MESSAGE,
    SUBSCRIBE_FAILED,
    SUBSCRIBE_UNANSWERED,
    PONG_TIMEOUT,
    DATA_TIMEOUT,
    WS_CLOSED,
    WS_CONNECT,
    REST_ERROR,
    REST_RATE_LIMITED,
    REDIS_ERROR,
    REPLICA_CONFLICT,
    OTHER,
)


def normalise(error_type: str) -> str:
    """Map any string to a member of :data:`ERROR_TYPES` (unknown ones become ``other``)."""
    return error_type if error_type in ERROR_TYPES else OTHER
