"""Classifier evaluation (SPEC §5): does synthetic data make a timm classifier better?

* :mod:`.classifier` — timm models, pretrained weights, fine-tuning strategies.
* :mod:`.train` — one training run at one synthetic share r and one seed.
* :mod:`.stats` — means, t-intervals and paired gains.
* :mod:`.run` — ``genaug eval-classifier``: the sweep, ``auto``, metrics.json, plots.
"""
