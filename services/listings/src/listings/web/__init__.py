"""The server-rendered HTML viewer."""
