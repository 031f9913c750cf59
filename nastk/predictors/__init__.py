"""Learned proxies / performance predictors trained on a few labelled architectures (ParZC, methods.md 8).

* :mod:`~nastk.predictors.layerwise_features` - per-layer grad_norm/snip/synflow of an NB201 pool, cached;
* :mod:`~nastk.predictors.losses` - DiffKendall (paper and PicoNAS scalings), MSE, pairwise;
* :mod:`~nastk.predictors.parzc` - the ParZC model (Bayesian MLP-Mixer + simplified PINAT) and an MLP baseline;
* :mod:`~nastk.predictors.fitting` - training loop and Monte-Carlo prediction (mean, std);
* :mod:`~nastk.predictors.experiment` - split, train on K, rank the rest (CLI and reproduction script);
* :mod:`~nastk.predictors.saved` - a fitted predictor on disk (``fit parzc --save``, the ``parzc`` evaluator).
"""
