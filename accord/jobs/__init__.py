"""One job runner for ingest and tokenize: steps, actor pools, batching, retries, per-unit
commits, error rows and run records, on Ray (local or ``--address``) or in-process."""
