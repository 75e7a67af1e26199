"""``accord manifest explore``: a local, read-only web app over an ingest output.

A person filters, sorts and pages the clips of a manifest of any size (DuckDB answers every
query server-side; :mod:`accord.explore.catalog`), opens a clip to listen to its segment and
read its transcripts side by side (:mod:`accord.explore.clipview`), and changes a stage's
thresholds to see, live, what it keeps (:mod:`accord.explore.gates`, the SQL form of
:func:`accord.core.eligibility.failures`), then exports them as the thresholds YAML that
``accord manifest stats --thresholds`` and ``accord tokenize --eligibility`` read.
The web layer is :mod:`accord.explore.app`; ``docs/explore.md`` says why it is built so.
"""
