"""distgraph's launcher, console script ``distgraph-run``: installed as the top-level package
``distgraph_launch`` (it imports no array code; ``distgraph.launch`` is another name for it)."""
