"""carqa's bottom layer: get papers (PubMed, files), store them, chunk, embed and index them.

Nothing in this package imports :mod:`qa` or :mod:`api`; data flows upward only.
"""
