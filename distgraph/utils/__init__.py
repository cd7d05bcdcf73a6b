"""Utilities (``dg.utils``)."""
