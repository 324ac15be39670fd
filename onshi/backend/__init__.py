"""Reference candidate backend: the eligibility API contract, its ASGI app, data and faults."""
