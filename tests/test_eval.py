"""eval-classifier: strategies, pairing, statistics, and no test-split leakage (SPEC §5)."""

import inspect
import json
from pathlib import Path

import pytest
import torch

from genaug.config import EvalConfig, load_config
from genaug.errors import ConfigError
from genaug.evaluate import run as eval_run
from genaug.evaluate.classifier import apply_strategy, create_classifier, head_names
from genaug.evaluate.data import load_eval_data
from genaug.evaluate.stats import paired_gain, t_interval
import torchvision.transforms.v2.functional as TF

from genaug.classify.views import _RAND_OPS, augment
from genaug.classify.trainer import synthetic_count
from genaug.io import append_jsonl
from genaug.synthetic.store import MANIFEST, Store, image_id

ROOT = Path(__file__).parents[1]
SMOKE = ROOT / "configs" / "smoke.yaml"


def grads_after_backward(ec: EvalConfig, size: int = 32) -> tuple[torch.nn.Module, set[str]]:
    model, spec = create_classifier(ec, num_classes=4, channels=1, data_size=size)
    model = apply_strategy(model, ec)
    x = spec(torch.randint(0, 256, (4, 1, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)))
    torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 3])).backward()
    got = {n for n, p in model.named_parameters() if p.grad is not None}
    assert all(model.get_parameter(n).grad.abs().sum() > 0 for n in got if n in head_names(model))  # real gradients
    return model, got


def test_full_trains_everything():
    model, got = grads_after_backward(EvalConfig(model="resnet18", strategy="full"))
    assert got == {n for n, _ in model.named_parameters()}


def test_linear_probe_trains_only_the_head():
    model, got = grads_after_backward(EvalConfig(model="resnet18", strategy="linear"))
    assert got == {"fc.weight", "fc.bias"} == head_names(model)


def test_last_n_trains_the_last_stages_and_head():
    _, got = grads_after_backward(EvalConfig(model="resnet18", strategy="last_n", last_n=1))
    assert got and all(n.startswith(("layer4.", "fc.")) for n in got) and "fc.weight" in got
    assert any(n.startswith("layer4.0.conv1") for n in got)
    _, two = grads_after_backward(EvalConfig(model="resnet18", strategy="last_n", last_n=2))
    assert any(n.startswith("layer3.") for n in two) and not any(n.startswith(("layer2.", "conv1")) for n in two)


def test_attention_only_trains_attention_and_head():
    ec = EvalConfig(model="vit_tiny_patch16_224", strategy="attention", model_kwargs={"img_size": 32, "patch_size": 8})
    model, got = grads_after_backward(ec)
    expected = {n for n, _ in model.named_parameters() if ".attn." in n} | {"head.weight", "head.bias"}
    assert got == expected and any(".attn.qkv." in n for n in got)
    with pytest.raises(ConfigError, match="attention"):
        grads_after_backward(EvalConfig(model="resnet18", strategy="attention"))


@pytest.mark.parametrize("name, kwargs", [("resnet18", {}), ("vit_tiny_patch16_224", {"img_size": 32, "patch_size": 8})])
def test_lora_trains_only_adapters_and_head(name, kwargs):
    model, got = grads_after_backward(EvalConfig(model=name, strategy="lora", lora_rank=4, model_kwargs=kwargs))
    assert got and all(("lora_A" in n or "lora_B" in n or "modules_to_save" in n) for n in got)
    assert any("lora_A" in n for n in got) and any("modules_to_save" in n for n in got)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert any("base_layer" in n for n in frozen)


def test_synthetic_share_is_exact_over_a_run():
    for r in (0.0, 0.1, 0.3, 0.5, 1.0):
        for b in (7, 16, 64):
            total = sum(synthetic_count(t, r, b) for t in range(100))
            assert total == round(r * b * 100)
            assert all(0 <= synthetic_count(t, r, b) <= b for t in range(100))


def test_randaugment_is_seeded_shape_keeping_and_draws_a_fixed_count():
    x = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    a, b = augment(x, "randaugment", g1), augment(x, "randaugment", g2)
    assert torch.equal(a, b) and a.dtype == torch.uint8 and a.shape == x.shape
    assert not torch.equal(a, augment(x, "randaugment", torch.Generator().manual_seed(2)))
    assert not torch.equal(a, augment(x, "shift_flip", torch.Generator().manual_seed(1)))  # the ops did something
    augment(torch.zeros_like(x), "randaugment", g2)  # other pixels, same draws: paired runs stay in step
    augment(x, "randaugment", g1)
    assert torch.equal(torch.rand(3, generator=g1), torch.rand(3, generator=g2))
    rgb = torch.randint(0, 256, (4, 3, 28, 28), dtype=torch.uint8)
    assert augment(rgb, "randaugment", g1).shape == rgb.shape


def test_random_shift_is_a_replicate_padded_crop_per_image():
    from genaug.classify.views import random_shift

    for shape, pad in [((9, 1, 28, 28), 2), ((4, 3, 16, 20), 1), ((5, 3, 8, 8), 4)]:
        x = torch.rand(shape, generator=torch.Generator().manual_seed(0))
        got = random_shift(x, torch.Generator().manual_seed(1), pad)
        g = torch.Generator().manual_seed(1)  # the same draws: dx for every image, then dy
        dx, dy = (torch.randint(0, 2 * pad + 1, (shape[0],), generator=g).tolist() for _ in range(2))
        padded = torch.nn.functional.pad(x, (pad,) * 4, mode="replicate")
        want = torch.stack([padded[i, :, dy[i] : dy[i] + shape[2], dx[i] : dx[i] + shape[3]] for i in range(shape[0])])
        assert torch.equal(got, want)


@pytest.mark.parametrize("name,reference", [
    ("autocontrast", lambda img, m: TF.autocontrast(img)),
    ("equalize", lambda img, m: TF.equalize(img)),
    ("solarize", lambda img, m: TF.solarize(img, int(255 - 256 * abs(m)))),
    ("posterize", lambda img, m: TF.posterize(img, 8 - round(4 * abs(m)))),
    ("contrast", lambda img, m: TF.adjust_contrast(img, 1 + 0.9 * m)),
    ("brightness", lambda img, m: TF.adjust_brightness(img, 1 + 0.9 * m)),
    ("sharpness", lambda img, m: TF.adjust_sharpness(img, 1 + 0.9 * m)),
])
def test_batched_randaugment_ops_match_torchvision_per_image(name, reference):
    op = dict(_RAND_OPS)[name]
    for channels in (1, 3):
        x = torch.randint(0, 256, (6, channels, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
        m = torch.tensor([0.3, -0.3, 0.3, -0.3, 0.6, -0.6])
        got = (op(x, m) + 0.5).clamp(0, 255).to(torch.uint8).int()
        want = torch.stack([reference(img, float(v)) for img, v in zip(x, m)]).int()
        assert (got - want).abs().max() <= 1, name


def test_t_interval_reference_values():
    ci = t_interval([1.0, 2.0, 3.0])
    assert ci["mean"] == 2.0 and ci["std"] == pytest.approx(1.0)
    assert ci["hi"] - ci["mean"] == pytest.approx(4.302653 / 3 ** 0.5, rel=1e-5)  # t(0.975, df=2) = 4.302653
    gain = paired_gain({0: 0.5, 1: 0.6, 2: 0.7}, {0: 0.6, 1: 0.7, 2: 0.8})
    assert gain["mean"] == pytest.approx(0.1) and gain["std"] == pytest.approx(0.0, abs=1e-12)
    assert t_interval([0.5])["lo"] is None


def test_parse_mix():
    assert eval_run.parse_mix("0.3", (0.1,)) == ([0.0, 0.3], False)
    assert eval_run.parse_mix("0,0.1,1", (0.1,)) == ([0.0, 0.1, 1.0], False)
    assert eval_run.parse_mix("auto", (0.1, 0.5)) == ([0.0, 0.1, 0.5], True)
    for bad in ("1.5", "x", ""):
        with pytest.raises(ConfigError):
            eval_run.parse_mix(bad, ())


def small_cfg(tmp_path, *extra):
    # 40 raw steps, no EMA: at a toy budget the weights' average lags what the model has learned
    # (test_converged.py covers the EMA)
    return load_config(SMOKE, [f"paths.runs_dir={tmp_path}/runs", f"paths.gen_dir={tmp_path}/gen", "eval.model=resnet_small28",
                               "eval.steps=40", "eval.eval_every=20", "eval.batch_size=32", "eval.seeds=3",
                               "eval.warmup_steps=5", "eval.lr=0.003", "eval.ema=false", *extra])


def write_noise_dataset(cfg, per_class: int = 30) -> None:
    """A gen_dataset of uniform noise with random labels, through the Store contract."""
    data = load_eval_data(cfg, need_synthetic=False)
    store = Store(cfg.gen_dir(), data.classes)
    g = torch.Generator().manual_seed(0)
    for c in range(len(data.classes)):
        for i in range(per_class):
            img = torch.randint(0, 256, (data.channels, data.size, data.size), dtype=torch.uint8, generator=g)
            label = int(torch.randint(0, len(data.classes), (1,), generator=g))
            iid = image_id(label, c * per_class + i)
            store.write_png(img, label, iid, True)
            append_jsonl(cfg.gen_dir() / MANIFEST, {"id": iid, "label": label, "class_name": data.classes[label],
                                                     "kept": True, "reason": None})


def test_noise_with_random_labels_gives_no_significant_gain(tmp_path):
    """The harness cannot manufacture gains: pure noise at r=0.5 is not significantly better."""
    cfg = small_cfg(tmp_path, "eval.mix=0.5")
    write_noise_dataset(cfg)
    metrics = eval_run.evaluate(cfg)
    gain = metrics["settings"][1]["gain_acc"]
    assert metrics["settings"][1]["mix"] == 0.5 and gain["n"] == 3
    assert gain["lo"] <= 0.0, gain
    assert metrics["settings"][0]["test_acc"]["mean"] > 0.2  # the baseline did learn something


class RecordingSplit:
    """Wraps the test split and records, for each read, whether test_metrics is on the stack."""

    def __init__(self, split):
        self._split, self.reads = split, []

    def _record(self, what):
        self.reads.append((what, any(f.function == "test_metrics" for f in inspect.stack())))

    @property
    def images(self):
        self._record("images")
        return self._split.images

    @property
    def labels(self):
        self._record("labels")
        return self._split.labels

    def __len__(self):
        self._record("len")
        return len(self._split)


def test_no_test_image_is_read_while_training_or_selecting(tmp_path, monkeypatch):
    cfg = small_cfg(tmp_path, "eval.mix=auto", "eval.auto_candidates=[0.5]", "eval.seeds=2", "eval.steps=10",
                    "eval.eval_every=5")
    write_noise_dataset(cfg, per_class=5)
    recorders = []

    def instrumented(cfg, *, need_synthetic):
        ed = load_eval_data(cfg, need_synthetic=need_synthetic)
        ed.test = RecordingSplit(ed.test)
        recorders.append(ed.test)
        return ed

    monkeypatch.setattr(eval_run, "load_eval_data", instrumented)
    metrics = eval_run.evaluate(cfg)
    reads = recorders[0].reads
    runs = len(metrics["per_seed"])  # naive, strong, + synthetic and oracle at 0.5, two seeds each
    assert runs == 8 and {r["arm"] for r in metrics["per_seed"]} == {"naive", "strong", "synthetic", "oracle"}
    assert [what for what, _ in reads].count("images") == runs  # once per (arm, r, seed) run, after training
    assert all(inside for _, inside in reads), [r for r in reads if not r[1]]
    assert metrics["auto"]["by"] == "mean val accuracy"


def test_rerun_trains_nothing_and_writes_outputs(tmp_path, monkeypatch, run_cli):
    cfg = small_cfg(tmp_path, "eval.mix=0", "eval.seeds=2", "eval.steps=10", "eval.eval_every=5")
    first = eval_run.evaluate(cfg)
    out = cfg.run_dir() / "eval"
    assert (out / "metrics.json").is_file() and (out / "accuracy_vs_mix.png").stat().st_size > 1000
    assert len((out / "rows.jsonl").read_text().splitlines()) == 4  # naive and strong, two seeds each

    def boom(*a, **k):
        raise AssertionError("trained again")

    monkeypatch.setattr(eval_run, "train_once", boom)
    again = eval_run.evaluate(cfg)
    assert again["settings"] == first["settings"]
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["settings"][0]["test_acc"]["n"] == 2 and saved["per_seed"][0]["n_test"] > 0


def test_same_seed_same_result(tmp_path):
    from genaug.classify.trainer import train_once

    cfg = small_cfg(tmp_path, "eval.steps=6", "eval.eval_every=3")
    ed = load_eval_data(cfg, need_synthetic=False)
    a, b = train_once(cfg, ed, 0.0, 5), train_once(cfg, ed, 0.0, 5)
    assert a["test_acc"] == b["test_acc"] and a["confusion"] == b["confusion"]


def test_batches_stay_class_balanced_when_a_class_is_not_augmented(tmp_path):
    """Synthetic slots are drawn per class; a class without synthetic images gets real ones."""
    from genaug.classify.trainer import _batch, _by_class

    cfg = small_cfg(tmp_path)
    ed = load_eval_data(cfg, need_synthetic=False)
    ed.syn_x = ed.train_x[ed.train_y == 0][:5]  # only class 0 "augmented"
    ed.syn_y = torch.zeros(5, dtype=torch.long)
    pools = (_by_class(ed.syn_y, 10), _by_class(ed.train_y, 10))
    gens = [torch.Generator().manual_seed(k) for k in range(3)]
    labels, used = [], 0
    for step in range(200):
        _, y, u = _batch(ed, step, 1.0, 20, gens, pools)
        labels.append(y)
        used += u
    counts = torch.bincount(torch.cat(labels), minlength=10).float()
    assert counts.min() / counts.max() > 0.75  # balanced, not 50% class 0
    assert 0.05 < used / 4000 < 0.15  # about 1 in 10 slots is synthetic (class 0's)


def test_balanced_real_sampling_evens_out_a_long_tail(tmp_path):
    """eval.real_sampling=balanced draws a class first: the resampling baseline."""
    from genaug.classify.trainer import _batch, _by_class

    cfg = small_cfg(tmp_path, "data.real_per_class=null", "data.imbalance=0.05")
    ed = load_eval_data(cfg, need_synthetic=False)
    pools = (_by_class(ed.syn_y, 10), _by_class(ed.train_y, 10))
    counts = {}
    for balanced in (False, True):
        gens = [torch.Generator().manual_seed(k) for k in range(3)]
        y = torch.cat([_batch(ed, step, 0.0, 32, gens, pools, balanced=balanced)[1] for step in range(100)])
        counts[balanced] = torch.bincount(y, minlength=10).float()
    assert counts[False][0] / counts[False][9] > 8  # uniform over images follows the long tail
    assert counts[True].min() / counts[True].max() > 0.7


def test_rebalancing_caution_only_for_imbalanced_uniform_runs():
    from genaug.evaluate.run import rebalancing_caution

    assert "rebalancing" in rebalancing_caution({"real": {"train_per_class": [360, 100, 18]}, "real_sampling": "uniform"})
    assert rebalancing_caution({"real": {"train_per_class": [360, 100, 18]}, "real_sampling": "balanced"}) is None
    assert rebalancing_caution({"real": {"train_per_class": [20, 20, 19]}, "real_sampling": "uniform"}) is None


def test_unknown_model_is_a_config_error():
    with pytest.raises(ConfigError, match="nosuch_model"):
        create_classifier(EvalConfig(model="nosuch_model"), num_classes=3, channels=1, data_size=28)


@pytest.mark.parametrize("name,stage_sizes", [("resnet_small28", [28, 14, 7, 4]), ("resnet_fast28", [14, 7, 4, 2]),
                                              ("resnet_medium32", [28, 14, 7, 4])])
def test_small_registered_resnets_keep_resolution_through_the_stem(name, stage_sizes):
    import timm

    import genaug.models  # noqa: F401  (registers the models)

    model = timm.create_model(name, num_classes=10, in_chans=1).eval()
    sizes = []
    hooks = [getattr(model, f"layer{i}").register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1]))
             for i in range(1, 5)]
    with torch.no_grad():
        out = model(torch.zeros(2, 1, 28, 28))
    for h in hooks:
        h.remove()
    assert out.shape == (2, 10) and sizes == stage_sizes


def test_fixmatch_views_are_seeded_uint8_and_the_strong_view_has_a_grey_square():
    from genaug.classify.views import cutout, fixmatch_views

    x = torch.zeros(6, 1, 28, 28, dtype=torch.uint8)
    weak, strong = fixmatch_views(x, "shift", torch.Generator().manual_seed(0))
    again = fixmatch_views(x, "shift", torch.Generator().manual_seed(0))
    assert weak.dtype == strong.dtype == torch.uint8 and weak.shape == strong.shape == x.shape
    assert torch.equal(weak, again[0]) and torch.equal(strong, again[1])
    cut = cutout(torch.zeros(4, 3, 16, 16, dtype=torch.uint8), torch.Generator().manual_seed(1))
    grey = (cut == 127).all(1)  # (B, H, W): every channel filled
    assert all(9 <= int(grey[i].sum()) <= 81 for i in range(4))  # a side-8 square (9x9 kernel at most), clipped


def test_fixmatch_loss_masks_unconfident_pool_images():
    """Threshold above every confidence: the labeled loss alone; below all: plus the strong
    views' cross-entropy against the weak views' argmax (the model in eval mode, so each
    image's logits do not depend on the batch). The labeled loss is plain cross-entropy
    even when the other rows smooth their labels (smoothing would cap the confidence
    under the threshold)."""
    from genaug.config import EvalConfig
    from genaug.classify.budget import row_budget
    from genaug.evaluate.data import EvalData
    from genaug.classify.trainer import _fixmatch_loss, _trainer

    ec = EvalConfig(model="resnet_fast28", ema=False, label_smoothing=0.1)
    ed = EvalData([str(i) for i in range(3)], 1, 28, torch.zeros(4, 1, 28, 28, dtype=torch.uint8),
                  torch.zeros(4, dtype=torch.long), None, None, None, torch.zeros(0), torch.zeros(0), {})
    torch.manual_seed(0)
    t = _trainer(ec, ed, row_budget(ec, 4))
    t.model.eval()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randint(0, 256, (4, 1, 28, 28), generator=g, dtype=torch.uint8), torch.tensor([0, 1, 2, 0])
    weak, strong = (torch.randint(0, 256, (8, 1, 28, 28), generator=g, dtype=torch.uint8) for _ in range(2))
    with torch.no_grad():
        lx, lw, ls = (t.model(t.spec(v)) for v in (x, weak, strong))
        labeled = torch.nn.functional.cross_entropy(lx, y)
        both = labeled + 2.0 * torch.nn.functional.cross_entropy(ls, lw.argmax(1))
        assert _fixmatch_loss(t, t.spec(x), y, weak, strong, 1.0, 2.0).item() == pytest.approx(labeled.item(), rel=1e-5)
        assert t.confident[-1].item() == 0.0
        assert _fixmatch_loss(t, t.spec(x), y, weak, strong, 1e-6, 2.0).item() == pytest.approx(both.item(), rel=1e-5)
        assert t.confident[-1].item() == 1.0


def test_a_fixmatch_rows_cap_counts_its_pool_images():
    """The converged cap is epochs over a row's own data; FixMatch's own data includes
    every pool image, so a 10-image split with a 1,000-image pool is not capped at
    min_steps."""
    from genaug.config import Config
    from genaug.evaluate.arms import Arm
    from genaug.classify.budget import row_budget
    from genaug.evaluate.data import EvalData
    from genaug.classify.trainer import arm_images

    ed = EvalData(["a", "b"], 1, 8, torch.zeros(10, 1, 8, 8, dtype=torch.uint8), torch.zeros(10, dtype=torch.long),
                  None, None, None, torch.zeros(0), torch.zeros(0), {})
    strong = Arm("strong", "", "", "balanced", "shift")
    fixmatch = Arm("fixmatch", "", "", "balanced", "shift", unlabeled=torch.zeros(1000, 1, 8, 8, dtype=torch.uint8))
    assert (arm_images(strong, ed), arm_images(fixmatch, ed)) == (10, 1010)
    ec = Config().eval.model_copy(update={"epochs": 10, "min_steps": 50, "max_steps": 10_000, "batch_size": 10})
    assert (row_budget(ec, arm_images(strong, ed)).cap, row_budget(ec, arm_images(fixmatch, ed)).cap) == (50, 1010)


def test_teacher_targets_are_the_extra_images_rows_and_smoothed_classes_for_real_ones(tmp_path):
    """eval.synthetic_labels=teacher: an extra slot's label is its teacher row; a real
    example's is its class smoothed exactly as LabelSmoothingCrossEntropy does."""
    from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy

    from genaug.classify.trainer import _batch, _by_class

    cfg = small_cfg(tmp_path)
    ed = load_eval_data(cfg, need_synthetic=False)
    ed.syn_x = torch.arange(20, dtype=torch.uint8).view(20, 1, 1, 1).expand(20, ed.channels, ed.size, ed.size).contiguous()
    ed.syn_y = torch.arange(20) % 10
    soft = torch.softmax(torch.randn(20, 10, generator=torch.Generator().manual_seed(0)), dim=1)
    pools = (_by_class(ed.syn_y, 10), _by_class(ed.train_y, 10))
    gens = [torch.Generator().manual_seed(k) for k in range(3)]
    x, y, used = _batch(ed, 0, 0.5, 16, gens, pools, targets=(soft, 0.1))
    assert y.shape == (16, 10) and used == 8 and torch.allclose(y.sum(1), torch.ones(16))
    real_x = x[:8]
    for xi, yi in zip(x[8:], y[8:]):  # the extra images: their own teacher rows
        assert torch.equal(yi, soft[int(xi[0, 0, 0])])
    hard = _batch(ed, 0, 0.5, 16, [torch.Generator().manual_seed(k) for k in range(3)], pools)
    assert torch.equal(hard[0][:8], real_x)  # same draws as without targets: the teacher row stays paired
    logits = torch.randn(8, 10)
    assert SoftTargetCrossEntropy()(logits, y[:8]).item() == pytest.approx(
        LabelSmoothingCrossEntropy(0.1)(logits, hard[1][:8]).item(), rel=1e-5)


def test_teacher_row_reports_disagreement_and_its_paired_gain_over_conditioning_labels(tmp_path):
    cfg = small_cfg(tmp_path, "eval.mix=0.5", "eval.seeds=2", "eval.steps=10", "eval.eval_every=5",
                    "eval.synthetic_labels=teacher", "judge.steps=20")
    write_noise_dataset(cfg, per_class=5)
    metrics = eval_run.evaluate(cfg)
    t = metrics["teacher"]
    assert {r["arm"] for r in metrics["per_seed"]} >= {"synthetic", "teacher"}
    labels = torch.tensor([r["label"] for r in Store(cfg.gen_dir(), metrics["classes"]).read_rows() if r["kept"]])
    assert 0.0 <= t["disagree"] <= 1.0 and t["model"] == "judge" and len(t["disagree_per_class"]) == 10
    assert [s["mix"] for s in t["settings"]] == [0.5] and set(t["over_condition"]) == {"0.5"}
    by_seed = lambda arm: {r["seed"]: r["test_acc"] for r in metrics["per_seed"] if r["arm"] == arm and r["mix"] == 0.5}
    cond, teach = by_seed("synthetic"), by_seed("teacher")
    assert t["over_condition"]["0.5"]["mean"] == pytest.approx(sum(teach[s] - cond[s] for s in cond) / len(cond), abs=1e-6)
    table = eval_run.results_table(metrics)
    assert "+ synthetic (teacher)" in table and "teacher labels vs conditioning labels" in table
    assert len(labels) == 50
    with pytest.raises(ConfigError, match="mixup"):
        eval_run.evaluate(small_cfg(tmp_path, "eval.mix=0.5", "eval.synthetic_labels=teacher", "eval.mixup=0.2"))
