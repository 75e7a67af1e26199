"""The clip manifest on storage: per-source atomic parts, completion markers, readers and views."""

from accord.pipeline.manifest.read import read_errors, read_manifest, reapply_eligibility, write_filtered
from accord.pipeline.manifest.rows import VOLATILE_COLUMNS, clip_row
from accord.pipeline.manifest.store import ManifestStore

__all__ = [
    "VOLATILE_COLUMNS",
    "ManifestStore",
    "clip_row",
    "read_errors",
    "read_manifest",
    "reapply_eligibility",
    "write_filtered",
]
