"""Storage for ingest: listing input buckets and writing outputs safely on any fsspec filesystem.

Local folders, ``file://``, ``s3://`` and ``gs://`` go through fsspec; credentials come from
the environment (or the filesystem's own config files) and are never logged or written.
"""

from accord.pipeline.io.fs import Store, join_uri, open_fs, redact_uri
from accord.pipeline.io.listing import DEFAULT_EXTENSIONS, ListingResult, Source, list_sources, source_key

__all__ = [
    "DEFAULT_EXTENSIONS",
    "ListingResult",
    "Source",
    "Store",
    "join_uri",
    "list_sources",
    "open_fs",
    "redact_uri",
    "source_key",
]
