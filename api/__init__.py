"""carqa's serving layer: the HTTP API (FastAPI) and the web chat widget."""
