// Redis engine tests.
