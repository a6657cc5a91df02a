"""intake: validates, normalizes and deduplicates problem requests into job envelopes."""
