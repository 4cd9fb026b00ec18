"""Shared parts of the reliability drills that run the whole stack (soak, chaos).

- :mod:`bench.drills.stack` starts the real stack on free loopback ports in a temp dir;
- :mod:`bench.drills.supervise` keeps the ingest running (a drill SIGKILLs it on purpose);
- :mod:`bench.drills.webhook` is Alertmanager's loopback receiver;
- :mod:`bench.drills.observe` reads what the stack says about itself (exporter, Prometheus);
- :mod:`bench.drills.truth` compares Redis with the simulator's truth after a quiet flush.
"""
