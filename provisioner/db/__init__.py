"""PostgreSQL: connections, schema, seed data, roles."""
