"""Stage one, supernet training: the run's configuration (``config``), the plug-ins found by
name (``registries``: samplers, estimators, objectives, regularizers, teachers), the
sandwich step (``step``) and the loop around it (``loop``). Importing the package
registers the built-in plug-ins; later stages read ``config`` without loading the
training loop."""

from anas.train import estimators, objectives, regularizers, samplers  # noqa: F401  (register the built-ins)
