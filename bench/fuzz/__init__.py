"""The fuzz drill's parts (``python -m bench.drill_fuzz`` runs them).

- :mod:`bench.fuzz.cases` — hypothesis strategies for exchange frames, each case carrying the
  verdict the documented validation rules predict (stored fields, or the error types allowed);
- :mod:`bench.fuzz.inprocess` — target 1: cases through the ingest's own decode, sink and RESP
  rendering, in this process;
- :mod:`bench.fuzz.wire` — target 2: cases served over a WebSocket to ``python -m ingest``
  writing to a real redis-server;
- :mod:`bench.fuzz.api_inputs` — target 3: hostile paths and queries against ``python -m api``
  while Redis ``MONITOR`` records every command it receives;
- :mod:`bench.fuzz.runner` — hypothesis run programmatically in seeded batches, bounded in time;
- :mod:`bench.fuzz.report` — the table, and its section in docs/RELIABILITY.md.
"""
