"""The results read model: queries over the tables results-sink writes.

The gateway (GetJob, ListJobs, WatchJob history), the dashboard and results-sink's
``results`` command read through here, so the read side of the schema has one home.
"""

from qbridge.results.read import (
    JobReader,
    StoredJob,
    decode_page_token,
    encode_page_token,
    recent_results,
)

__all__ = [
    "JobReader",
    "StoredJob",
    "decode_page_token",
    "encode_page_token",
    "recent_results",
]
