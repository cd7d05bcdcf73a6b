"""``torch.distributed.elastic.multiprocessing``: only ``errors`` (``record``) is provided."""
