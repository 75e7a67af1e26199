"""Listing input buckets for ingest (storage itself is :mod:`accord.core.storage`)."""

from accord.pipeline.io.listing import DEFAULT_EXTENSIONS, ListingResult, Source, list_sources, source_key

__all__ = ["DEFAULT_EXTENSIONS", "ListingResult", "Source", "list_sources", "source_key"]
