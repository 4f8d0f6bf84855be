"""Figures, tables and the explorer: what the notebooks draw, print and let you click.

Modules here may import ``matplotlib.pyplot`` and seaborn (the statistical plots: box and
violin plots of the sets, per-category bars, heat maps); no other stage does, so importing
:mod:`difflens.analysis` never starts a plotting backend. :mod:`difflens.viz.explorer` holds
the ipywidgets explorer of matches and distances (notebook 12), whose computations are in
:mod:`difflens.viz.explorer_logic`.
"""
