"""Fixtures for the seeded demo database (filled in by the database work)."""
