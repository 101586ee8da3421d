"""Evaluating a trained supernet: a run loaded back (``trained``), its subnets evaluated
with recalibrated BN into records (``records``), and the predict-fit workflow
(``predict_fit``)."""
