"""``torch.distributed.elastic``'s names that training scripts import (``distgraph-run`` is the launcher;
there is no elastic agent): ``elastic.multiprocessing.errors.record``."""
