"""Batch processing on Ray: inputs and manifests, the worker actor, scheduling, the report."""
