"""Optimizers and learning-rate schedulers (``dg.optim``)."""
