"""Views of an ingest's clip manifest: summaries (``stats``) and PNG/HTML plots (``plot``).

The manifest itself (layout, writer, readers) is the core contract :mod:`accord.core.manifest`.
"""
