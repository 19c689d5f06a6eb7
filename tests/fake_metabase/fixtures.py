"""pytest fixtures that start the fake Metabase."""
