// The RESP client and Redis engine (issue 5).
