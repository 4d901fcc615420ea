"""Labeled synthetic data sets (SPEC §4): draw images from a trained generator,
score them, filter them, and keep ``gen_dataset/<run>/`` consistent across crashes.

* :mod:`.generators` — open a ``best``/``last``/path checkpoint of any kind as a
  ``draw(labels, seeds) -> uint8 images`` function (a registry keyed by kind).
* :mod:`.scores` — judge confidence, feature-space realism, nearest real neighbour.
* :mod:`.store` — the on-disk layout, the manifest and the filter decisions.
* :mod:`.sample` — ``genaug sample`` and ``genaug filter``.
"""
