"""Engines fit a :class:`~disparity.design.Design` and return a :class:`~disparity.engines.base.Fit`.

Each adapter imports its heavy library (statsmodels, GPBoost, PyMC) inside its functions.
"""
