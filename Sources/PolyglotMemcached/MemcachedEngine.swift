// The memcached engine (ASCII protocol): keyValue and the cache projection (issue 5).
