"""distgraph's launcher (installed as ``distgraph.launch``, console script ``distgraph-run``)."""
