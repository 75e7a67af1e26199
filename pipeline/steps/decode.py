"""DecodeStep: probe a source and fingerprint its bytes (no samples kept)."""

from __future__ import annotations

from dataclasses import dataclass

from accord.core import audio_io
from accord.jobs.step import Item, ItemError, Step


def source_uri(item: Item) -> str:
    uri = item.get("source_uri") or item.get("uri")
    if not uri:
        raise ItemError("decode", "bad_item", "item has neither 'source_uri' nor 'uri'")
    return str(uri)


@dataclass
class DecodeConfig:
    hash_bytes: bool = True  # sha256 of the source bytes, unless the item already has one


class DecodeStep(Step):
    """Source item ``{uri}`` -> the same item with ``source_*`` fields, or an ItemError.

    Only the header is read here; samples are decoded window by window in :class:`VadStep`.
    """

    name = "decode"
    reads = ("source_uri",)  # the unit item's (a bare ``{uri}`` item works too)
    may_read = ("source_sha256",)  # a fingerprint the item already has is kept
    writes = ("source_uri", "source_sha256", "source_sample_rate", "source_channels", "source_duration_s")
    carries = ("source_container", "source_codec")

    def __init__(self, config: DecodeConfig | None = None) -> None:
        self.config = config or DecodeConfig()

    def process(self, item: Item) -> list[Item]:
        uri = source_uri(item)
        try:
            info = audio_io.probe(uri)
            sha = item.get("source_sha256") or (audio_io.sha256_of(uri) if self.config.hash_bytes else "")
        except audio_io.AudioError as e:
            raise ItemError(self.name, e.error_type, e.reason) from None
        except FileNotFoundError as e:
            raise ItemError(self.name, "not_found", f"no such file: {e}") from None
        out = dict(item)
        out.update(
            source_uri=uri,
            source_sha256=sha,
            source_sample_rate=info.sample_rate,
            source_channels=info.channels,
            source_duration_s=info.duration_s,
            source_container=info.container,
            source_codec=info.codec,
        )
        return [out]
