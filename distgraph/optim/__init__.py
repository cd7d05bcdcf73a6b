"""Optimizers and learning-rate schedulers (``dg.optim``), with PyTorch's names and update rules.

    opt = dg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = dg.optim.lr_scheduler.StepLR(opt, step_size=30)
"""
from distgraph.optim import lr_scheduler, swa_utils
from distgraph.optim.adam import Adam, AdamW
from distgraph.optim.adam_variants import NAdam, RAdam
from distgraph.optim.adaptive import Adadelta, Adagrad, Adamax
from distgraph.optim.asgd_rprop import ASGD, Rprop
from distgraph.optim.lbfgs import LBFGS
from distgraph.optim.optimizer import Optimizer
from distgraph.optim.rmsprop import RMSprop
from distgraph.optim.sgd import SGD

__all__ = ["ASGD", "Adadelta", "Adagrad", "Adam", "AdamW", "Adamax", "LBFGS", "NAdam", "Optimizer", "RAdam",
           "RMSprop", "Rprop", "SGD", "lr_scheduler", "swa_utils"]
