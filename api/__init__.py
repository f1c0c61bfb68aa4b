"""carqa's serving layer: the command line, the HTTP API and the web chat widget."""
