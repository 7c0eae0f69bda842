import VaporCSQLite
func sqliteVersion() -> String { String(cString: sqlite_nio_sqlite3_libversion()) }
