"""Where PostgreSQL and Metabase run: docker compose, local processes, or external services."""
