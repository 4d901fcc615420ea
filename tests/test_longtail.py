"""Long-tailed data (issue 28): class-balanced generator batches, gSR for the GAN, CBDM
for diffusion, and per-class conditioning accuracy where a user reads it."""


import numpy as np
import pytest
import torch

from genaug.generators.dcgan import Generator, effective_number_weights, gsr_penalty, near_square
from genaug.io import read_jsonl
from genaug.training import ClassIndex, GeneratorSet, batch_indices, set_indices


def _set(labels, n_pool=0, share=0.0, balanced=True):
    labels = torch.tensor(labels + [0] * n_pool)
    n = len(labels) - n_pool
    gs = GeneratorSet(torch.zeros(len(labels), 1, 4, 4, dtype=torch.uint8), labels, None, n, share)
    gs.by_class = ClassIndex.of(labels[:n]) if balanced else None
    return gs


def test_balanced_draws_give_every_class_the_same_share_and_only_its_own_images():
    labels = [0] * 300 + [1] * 30 + [2] * 3  # 100:10:1
    gs = _set(labels)
    idx = torch.cat([set_indices(gs, 0, step, 64, 1, 0) for step in range(300)])  # 19,200 draws
    drawn = torch.tensor(labels)[idx]
    share = torch.bincount(drawn, minlength=3).float() / len(drawn)
    assert torch.allclose(share, torch.full((3,), 1 / 3), atol=0.02)
    assert set(idx[drawn == 2].tolist()) == {330, 331, 332}  # all three images of the rarest class, nothing else
    natural = torch.tensor(labels)[torch.cat([batch_indices(0, s, len(labels), 64, 1, 0) for s in range(300)])]
    assert (natural == 2).float().mean() < 0.02  # what the GAN saw of it before: under 1%


def test_balanced_draws_are_seeded_and_ranks_split_one_global_batch():
    gs = _set([0] * 50 + [1] * 5 + [3] * 2)  # class 2 has no image: never drawn, no error
    one = set_indices(gs, 4, 9, 32, 1, 0)
    assert torch.equal(one, set_indices(gs, 4, 9, 32, 1, 0))
    assert torch.equal(torch.cat([set_indices(gs, 4, 9, 16, 2, r) for r in (0, 1)]), one)
    assert not torch.equal(one, set_indices(gs, 4, 10, 32, 1, 0))


def test_balanced_labeled_slots_leave_the_pool_share_unchanged():
    gs = _set([0] * 40 + [1] * 4, n_pool=100, share=0.25)
    idx = set_indices(gs, 0, 3, 32, 1, 0)
    assert int((idx >= 44).sum()) == 8
    labeled = torch.cat([set_indices(gs, 0, s, 32, 1, 0) for s in range(200)])
    labeled = labeled[labeled < 44]
    assert 0.4 < (labeled >= 40).float().mean() < 0.6  # class 1 (4 images of 44) fills half the labeled slots


def test_near_square_and_effective_number_weights():
    assert near_square(128) == (8, 16) and near_square(64) == (8, 8) and near_square(7) == (1, 7)
    w = effective_number_weights([360, 100, 18, 0], beta=0.999)
    assert w.sum().item() == pytest.approx(4.0, rel=1e-5)
    assert w[0] < w[1] < w[2] < w[3]  # rarer classes weigh more


def test_gsr_is_zero_at_init_and_penalises_one_class_with_its_weight():
    torch.manual_seed(0)
    G = Generator(z_dim=8, num_classes=3, channels=1, image_size=16, width=8)
    weights = torch.tensor([0.5, 1.0, 1.5])
    assert gsr_penalty(G, weights).item() == pytest.approx(0.0, abs=1e-7)
    cbn = G.norm0  # gain/bias embeddings (3, C)
    with torch.no_grad():
        cbn.bias.weight[2] += torch.linspace(-1, 1, cbn.bias.embedding_dim)
    pen = gsr_penalty(G, weights)
    a, b = near_square(cbn.bias.embedding_dim)
    sigma = np.linalg.svd(cbn.bias.weight[2].detach().numpy().reshape(a, b), compute_uv=False)[0]
    layers = sum(1 for m in G.modules() if type(m).__name__ == "ConditionalBatchNorm2d")
    assert pen.item() == pytest.approx(1.5 * sigma**2 / 3 / layers, rel=1e-4)  # class weight x sigma^2, mean
    pen.backward()
    assert cbn.bias.weight.grad[2].abs().sum() > 0 and cbn.bias.weight.grad[:2].abs().sum() == 0


def test_cbdm_term_is_zero_without_weight_and_skips_dropped_labels():
    from diffusers import DDPMScheduler, UNet2DModel

    from genaug.generators.diffusion_train import DiffusionParts, _cbdm_term

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(8, 8), layers_per_block=1,
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       norm_num_groups=4, num_class_embeds=4)
    parts = DiffusionParts(unet, None, None, None, DDPMScheduler(num_train_timesteps=100), None, torch.full((3,), 1 / 3))
    x, t = torch.randn(4, 1, 8, 8), torch.tensor([10, 50, 90, 99])
    y = torch.tensor([0, 1, 2, 0])
    pred = unet(x, t, class_labels=y).sample
    g = lambda: torch.Generator().manual_seed(1)
    assert _cbdm_term(parts, x, t, y, pred, g(), 0.0, 3).item() == 0.0
    term = _cbdm_term(parts, x, t, y, pred, g(), 1.0, 3)
    assert term.item() > 0
    assert _cbdm_term(parts, x, t, torch.full((4,), 3), pred, g(), 1.0, 3).item() == 0.0  # all dropped to null
    term.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in unet.parameters())


def test_train_gan_with_gsr_logs_it_and_per_class_conditioning(tmp_path):
    from genaug.generators.gan_train import train_gan
    from test_sample import cfg_for

    out = train_gan(cfg_for(tmp_path, "gan.long_tail=gsr", "gan.class_balance=balanced"))
    rows = read_jsonl(out / "metrics.jsonl")
    assert all(r["gsr"] >= 0 for r in rows if "loss_g" in r)
    evals = [r for r in rows if "fid" in r]
    assert evals and all(len(r["cond_acc_per_class"]) == 10 for r in evals)
    r = evals[-1]
    assert r["cond_acc"] == pytest.approx(np.mean([a for a in r["cond_acc_per_class"]]), abs=0.15)  # 40 samples, 4 per class


def test_train_diffusion_with_cbdm_logs_it(tmp_path):
    from genaug.generators.diffusion_train import train_diffusion
    from test_sample import cfg_for

    out = train_diffusion(cfg_for(tmp_path, "diffusion.long_tail=cbdm", "diffusion.steps=3", "diffusion.eval_every=3"))
    rows = [r for r in read_jsonl(out / "metrics.jsonl") if "loss" in r]
    assert rows and all(np.isfinite(r["cbdm"]) and r["cbdm"] >= 0 for r in rows)


def test_eval_names_the_classes_without_synthetic_images():
    from genaug.evaluate.run import coverage_text

    metrics = {"classes": ["a", "b", "c"], "synthetic": {"per_class": [200, 0, 200]}}
    assert "covers 2 of 3 classes" in coverage_text(metrics) and "'b'" in coverage_text(metrics)
    metrics["synthetic"]["per_class"] = [1, 1, 1]
    assert coverage_text(metrics) is None


def test_best_checkpoint_prefers_one_that_draws_every_class():
    from genaug.training import TrainState

    st = TrainState()
    picks = []
    for step, fid, accs in [(400, 8.0, [0.5, 0.1]), (800, 3.0, [0.9, 0.6]), (1200, 1.9, [1.0, 0.73]),
                            (1600, 2.0, [1.0, 0.95]), (2000, 1.8, [1.0, 0.5]), (2400, 1.95, [0.92, 1.0])]:
        st.step = step
        picks.append(st.take_if_better(fid, accs, 0.9))
    # lowest FID while no step draws every class; then only steps that do, by FID
    assert picks == [True, True, True, True, False, True] and st.best_step == 2400
    assert st.extra["best_draws_every_class"] is True
    again = TrainState()
    again.load_state_dict(st.state_dict())  # resumed runs keep the rule's state
    again.step = 2800
    assert not again.take_if_better(1.0, [0.2, 1.0], 0.9) and again.take_if_better(1.9, [1.0, 1.0], 0.9)
