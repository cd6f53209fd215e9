"""flagman runtime: Kafka I/O, store, worker, replay, CLI and HTTP."""
