"""The contracts every room of accord stands on, each with one owner.

- :mod:`accord.core.stages` and :mod:`accord.core.eligibility`: the four training stages and
  their thresholds, applied at ingest and again at read time;
- :mod:`accord.core.clip`: the clip schema, one shape from manifest row to shard sample to
  loader row;
- :mod:`accord.core.errors` and :mod:`accord.core.runs`: error rows and run records;
- :mod:`accord.core.storage`: local / s3 / gs storage with atomic writes and key checks;
- :mod:`accord.core.vocab` and :mod:`accord.core.delay`: the token vocabulary, the DAC code
  layout and the delay pattern;
- :mod:`accord.core.manifest`: the clip manifest of an ingest output, its layout, its per-source
  writer and its readers side by side (eligibility re-applied at read time);
- :mod:`accord.core.shards`: the WebDataset shard format, its writer and reader side by side,
  and the one reader of ``tokenize.json``;
- :mod:`accord.core.audio_io`: decoding any common audio file by content, in windows or spans;
- :mod:`accord.core.config`: one config style for every job (a dataclass, a YAML file, flags).

Nothing here imports pipeline/, tokenize/, model/ or train/.
"""
