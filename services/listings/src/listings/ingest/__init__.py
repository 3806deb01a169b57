"""Feed ingest: validation, the job queue, the batch writer and the worker."""
