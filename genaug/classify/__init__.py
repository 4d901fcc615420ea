"""The classifier-training core every classifier genaug trains goes through (STYLE 9).

* :mod:`.streams` — what a run trains on (:class:`~.streams.EvalData`) and how it draws
  from it (:class:`~.streams.Arm`).
* :mod:`.views` — augmentation: the classic views, RandAugment, FixMatch's weak / strong.
* :mod:`.budget` — how long a run trains and when it stops (converged on val, or fixed).
* :mod:`.trainer` — :func:`~.trainer.fit`: one run, selected on val; the evaluation rows,
  the FixMatch learner and the judge are configurations of it.
"""
