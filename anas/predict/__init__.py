"""Accuracy predictors: records of measured subnets (``records``), the features
predictors see (``features``), predictor kinds found by name (``kinds``), their folders
(``folder``), fitting and measuring them (``fit``, ``metrics``)."""
