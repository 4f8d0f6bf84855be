"""The core stage: what every other stage shares and that imports nothing of difflens.

- :mod:`difflens.core.errors`: :class:`~difflens.core.errors.BadInputError` and
  :class:`~difflens.core.errors.DatasetError`, the errors that name a bad input and say
  what is wrong with it;
- :mod:`difflens.core.skips`: :class:`~difflens.core.skips.SkipLog`, the counted and named
  record of the items a long loop passed over;
- :mod:`difflens.core.paths`: where difflens keeps its caches.
"""
