"""disparity: measuring disproportionality in school exclusions honestly and at scale.

The package is a one-directional flow of values (see ``README.md``)::

    read -> validate -> collapse (cells) -> measures (raw ratios)
    cells + ModelSpec -> design -> engine.fit -> Fit -> estimates -> report

``import disparity`` stays light: statsmodels, GPBoost, PyMC and matplotlib are imported
only inside the adapters that use them.
"""

from __future__ import annotations

__version__ = "0.1.0"
