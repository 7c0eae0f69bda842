import Polyglot
import PolyglotPostgres
import PolyglotSQLite

extension EngineRegistry {
    /// Every engine the command-line tool can open: `memory`, `sqlite` and `postgres`.
    static var cli: EngineRegistry {
        var r = EngineRegistry.embedded
        r.registerPostgres()
        return r
    }
}
