"""Probability distributions, PyTorch's ``torch.distributions`` names (see docs/distributions.md).

    import distgraph as dg
    from distgraph.distributions import Normal, kl_divergence
    q = Normal(mu, log_sigma.exp())
    z = q.rsample()                          # gradients flow to mu and log_sigma
    loss = -log_lik(z) + kl_divergence(q, Normal(0.0, 1.0)).sum()

Every method is built from distgraph's differentiable ops, so ``log_prob``, ``rsample``,
``entropy``, ``cdf`` and ``kl_divergence`` backpropagate into the parameters.  Draws come
from distgraph's generators (``dg.manual_seed`` makes them reproducible; the numbers differ
from torch's, the distributions are the same).
"""
from distgraph.distributions import constraints
from distgraph.distributions.continuous import Exponential, Laplace, Normal, Uniform
from distgraph.distributions.discrete import Bernoulli, Categorical, OneHotCategorical
from distgraph.distributions.distribution import Distribution
from distgraph.distributions.gamma_family import Beta, Dirichlet, Gamma, Poisson
from distgraph.distributions.kl import kl_divergence, register_kl
from distgraph.distributions.multivariate import Independent, MultivariateNormal

__all__ = ["Distribution", "Normal", "Laplace", "Uniform", "Exponential", "Bernoulli", "Categorical",
           "OneHotCategorical", "MultivariateNormal", "Independent", "Gamma", "Beta", "Dirichlet", "Poisson",
           "kl_divergence", "register_kl",
           "constraints"]
