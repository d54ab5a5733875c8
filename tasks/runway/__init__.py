"""L0 runway: read-only checks of env, API, token, nodes, storage and tools."""
