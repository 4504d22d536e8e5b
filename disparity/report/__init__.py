"""Reporting: disclosure control, funnel limits, figures, tables and rendered reports.

The reporting layer turns estimates and cells into things a reader sees. Every count passes
through disclosure control (:mod:`disparity.report.suppress`) before it is formatted.

Modules
-------
suppress
    Primary and secondary suppression of published counts, GSS symbols, rounding.
funnel
    Funnel-plot control limits for unit rates and standardised ratios, with
    over-dispersion adjustment (numbers only; no plotting).
plots
    Funnel, forest, caterpillar and trend figures (matplotlib, imported inside the
    functions) and deterministic saving to PNG and SVG.

Nothing is imported here, so ``import disparity.report`` stays light.
"""
