"""Per-record pipeline steps: each testable without Ray, composed by the Ray job."""
