"""Stage one, supernet training: the configuration (``config``), data (``data``), the run
folder (``rundir``), samplers, estimators and regularizers found by name, the sandwich
step (``step``) and the loop around it (``loop``). Later stages read ``config``, ``data``
and ``rundir`` without loading the training loop."""
