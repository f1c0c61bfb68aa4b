"""carqa's answering layer: retrieval over an :mod:`index`, cited answers, chat sessions."""
