"""Metabase: the HTTP client, its JSON models, and first-run setup."""
