"""Samplers: which subnets a sandwich step trains. Importing this package registers the
built-in ones (``uniform``, ``bestup-kN``, ``worstup-kN``, ``fpnas``)."""

from anas.train.samplers import attentive, fpnas, uniform  # noqa: F401  (register the built-ins)
from anas.train.samplers.sampler import SAMPLERS, Sampler, SamplerContext, build_sampler, register_sampler

__all__ = ["SAMPLERS", "Sampler", "SamplerContext", "build_sampler", "register_sampler"]
