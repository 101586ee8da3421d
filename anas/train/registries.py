"""The plug-in kinds of supernet training, found by name: samplers, estimators,
objectives, regularizers and teachers. Each kind's protocol lives in its folder
(``samplers/sampler.py``, ...); the registries live here, beneath the run's configuration
(:mod:`anas.train.config`), which offers the plug-ins' options and checks them."""

from __future__ import annotations

from anas.registry import Registry

SAMPLERS: Registry = Registry("sampler")
"""Which subnets a sandwich step trains (``--sampler``; :mod:`anas.train.samplers`)."""
ESTIMATORS: Registry = Registry("estimator")
"""How attentive sampling scores its candidates (``--estimator``; :mod:`anas.train.estimators`)."""
OBJECTIVES: Registry = Registry("objective")
"""What a supernet learns from (``--objective``; :mod:`anas.train.objectives`)."""
REGULARIZERS: Registry = Registry("regularizer")
"""Loss terms and hooks around a sandwich step (``--regularizer``; :mod:`anas.train.regularizers`)."""
TEACHERS: Registry = Registry("teacher")
"""Who teaches the sampled subnets besides the largest one (``--teacher``;
:mod:`anas.train.regularizers.teacher`)."""

register_sampler = SAMPLERS.register
register_estimator = ESTIMATORS.register
register_objective = OBJECTIVES.register
register_regularizer = REGULARIZERS.register
register_teacher = TEACHERS.register
