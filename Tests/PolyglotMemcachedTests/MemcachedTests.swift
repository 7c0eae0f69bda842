// memcached engine tests.
