"""Services: router, group router, sessions, storage, REST API."""
