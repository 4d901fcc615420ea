"""Classifier evaluation (SPEC §5): does synthetic data make a timm classifier better?

* :mod:`.classifier` — timm models, pretrained weights, fine-tuning strategies.
* :mod:`.arms` — the rows (registered arms); :mod:`.data` — loading what they train on.
* training itself is :mod:`genaug.classify.trainer` (one trainer for every classifier).
* :mod:`.stats` — means, t-intervals and paired gains.
* :mod:`.run` — ``genaug eval-classifier``: the sweep, ``auto``, metrics.json, plots.
"""
