"""The HTTP protocols the server speaks; each module builds one FastAPI router."""
