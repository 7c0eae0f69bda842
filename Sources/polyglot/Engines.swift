import Polyglot
import PolyglotMemcached
import PolyglotPostgres
import PolyglotRedis
import PolyglotSQLite

extension EngineRegistry {
    /// Every engine the command-line tool can open: `memory`, `sqlite`, `postgres`, `redis` and `memcached`.
    static var cli: EngineRegistry {
        var r = EngineRegistry.embedded
        r.registerPostgres()
        r.registerRedis()
        r.registerMemcached()
        return r
    }
}
