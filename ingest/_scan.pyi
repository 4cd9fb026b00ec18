"""Types of the C scanner (ingest/_scan.c), built where a C compiler is; see ingest/canonical.py."""

class Scanner:
    def __init__(self, *, head: bytes, prefix: bytes, keys: tuple[bytes, ...],
                 headers: tuple[bytes, ...], required: tuple[bool, ...], ts_header: bytes,
                 recv_header: bytes) -> None: ...
    def scan(self, frame: bytes | str, recv_ms: int, /) -> tuple[str, int, bytes] | None: ...
