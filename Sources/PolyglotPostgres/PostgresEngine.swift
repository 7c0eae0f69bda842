// The PostgreSQL engine (issue 4).
