// PostgreSQL engine tests.
