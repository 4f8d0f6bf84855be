"""The run stage: execute the notebooks with a config, set a notebook up, train the toy model.

``python -m difflens.runner --config demo|ci|paper`` runs the numbered notebooks
(:mod:`difflens.runner.notebooks`); :mod:`difflens.runner.setup` is the one call a notebook
starts with; ``python -m difflens.runner.toy_model train`` trains the built-in toy model.
"""
