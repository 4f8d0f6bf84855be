"""Distances, distance sets and their statistics: the analysis stage of difflens.

Distances between prototypes (:mod:`~difflens.analysis.distances`), the paper's distance
sets (:mod:`~difflens.analysis.sets`, :mod:`~difflens.analysis.aggregates`,
:mod:`~difflens.analysis.source_sums`), their summaries and statistics (p-values, rank
tests, effect sizes, Dunn indices, pairwise comparisons, the image-level bootstrap, the
permutation test), the notebooks' set analysis, the video offsets and the controls. Each
statistic its data cannot define follows :mod:`~difflens.analysis.undefined`.
"""
