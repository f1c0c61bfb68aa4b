"""carqa's bottom layer: getting papers (:mod:`carqa.index.corpus`) and the search index built
from them (:mod:`carqa.index.search`).

Nothing in this package imports :mod:`carqa.qa` or :mod:`carqa.api`; data flows upward only,
and inside it ``search`` reads what ``corpus`` stored, never the other way round.
"""
