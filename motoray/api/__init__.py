"""The HTTP API: a FastAPI app served by Ray Serve (see `deployment.py`)."""
