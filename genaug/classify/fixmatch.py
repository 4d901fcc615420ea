"""FixMatch-style self-training rounds (Sohn et al. 2020) of a classifier on the
unlabeled pool: the judge's ``judge.self_training``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genaug.classify.views import rand_augment, random_shift, to_input
from genaug.config import Config
from genaug.data.base import LabeledData
from genaug.progress import progress


def self_train(cfg: Config, data: LabeledData, model: torch.nn.Module, opt_factory, gen: torch.Generator,
               evaluate) -> list[dict]:
    """FixMatch-style rounds (Sohn et al. 2020) on the pool: each of ``judge.self_training``
    rounds trains ``judge.steps`` more steps on labeled batches (shifted) plus pool
    batches whose weak view (shifted) predicts a class with probability >=
    ``judge.self_training_threshold``; that pseudo-label trains the strong view (shift +
    two RandAugment ops). ``evaluate(model) -> val accuracy`` picks the best round;
    returns one row per round. The model ends with the last round's weights; the
    caller keeps the best."""
    jc, ch = cfg.judge, data.channels
    train, pool = data.splits["train"], data.unlabeled
    x_l = torch.from_numpy(train.images).permute(0, 3, 1, 2)  # (N, C, H, W) uint8
    y_l = torch.from_numpy(train.labels)
    x_u = torch.from_numpy(pool.images).permute(0, 3, 1, 2)  # (M, C, H, W) uint8
    rows = []
    for rnd in range(1, jc.self_training + 1):
        opt, sched = opt_factory()
        masked, bar = [], progress(range(jc.steps), desc=f"judge self-training {rnd}", unit="step", leave=False)
        for step in bar:
            model.train()
            il = torch.randint(0, len(y_l), (jc.batch_size,), generator=gen)
            iu = torch.randint(0, len(x_u), (jc.batch_size,), generator=gen)
            with torch.no_grad():
                weak = F.softmax(model(random_shift(to_input(x_u[iu], ch), gen)), dim=1)
            conf, pseudo = weak.max(1)
            mask = (conf >= jc.self_training_threshold).float()
            strong = to_input(rand_augment(random_shift(x_u[iu].float(), gen).round().to(torch.uint8), gen), ch)
            # no label smoothing here, as in FixMatch: it would cap confidence below the threshold
            loss_l = F.cross_entropy(model(random_shift(to_input(x_l[il], ch), gen)), y_l[il])
            loss_u = (F.cross_entropy(model(strong), pseudo, reduction="none") * mask).mean()
            loss = loss_l + jc.self_training_weight * loss_u
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step(step + 1)
            masked.append(mask.mean())
        acc = evaluate(model)
        rows.append({"round": rnd, "val_accuracy": acc, "confident_share": float(torch.stack(masked).mean())})
        print(f"judge self-training round {rnd}: val accuracy {acc:.4f}, "
              f"{rows[-1]['confident_share']:.2f} of pool draws confident")
    return rows
