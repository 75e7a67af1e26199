"""Listing input buckets for ingest (storage itself is :mod:`accord.core.storage`; the
:class:`Source` record a listing yields, and its key, are the manifest's: :mod:`accord.core.manifest`)."""

from accord.core.manifest import Source, source_key
from accord.pipeline.sources.listing import DEFAULT_EXTENSIONS, ListingResult, list_sources

__all__ = ["DEFAULT_EXTENSIONS", "ListingResult", "Source", "list_sources", "source_key"]
