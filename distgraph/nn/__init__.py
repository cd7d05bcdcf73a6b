"""Neural-network building blocks (``dg.nn``); ``dg.nn.functional`` holds the functional forms."""
from distgraph.nn import functional  # noqa: F401
