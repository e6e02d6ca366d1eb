"""The event store on PostgreSQL (psycopg 3): selected by a `postgresql://` URL as the
database. The schema, the connection as the shared store code uses it, the advisory locks
(writers, the one daemon), and the move of an SQLite log into an empty database."""
