"""Datasets, samplers and loaders (``dg.utils.data``)."""
