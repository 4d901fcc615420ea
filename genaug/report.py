"""``genaug report``: ``runs/<run>/report.html`` (self-contained, images embedded) and
``report.md`` (images in ``runs/<run>/report_assets/``), from the files the stages wrote.
Every section is optional: a stage that has not run is reported as missing."""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from genaug.config import Config
from genaug.evaluate.plots import png_bytes
from genaug.evaluate.run import budget_text, coverage_text, rebalancing_caution, steps_text
from genaug.io import atomic_write_bytes, atomic_write_text, read_jsonl
from genaug.synthetic.sample import unfilled

SCALE, PER_SIDE = 2, 8


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _tile(images: list[np.ndarray], size: int, channels: int, n: int) -> np.ndarray:
    """n images side by side (H, W, C) uint8; blanks (mid-grey) where fewer."""
    blank = np.full((size, size, channels), 128, np.uint8)
    row = [(img if img.ndim == 3 else img[:, :, None]) for img in images[:n]] + [blank] * (n - len(images[:n]))
    return np.concatenate(row, axis=1)


def _panel(left: list[list[np.ndarray]], right: list[list[np.ndarray]], size: int, channels: int) -> bytes:
    """One row per class: ``left[c]`` | gap | ``right[c]``, upscaled for viewing."""
    gap = np.full((size, size // 2, channels), 255, np.uint8)
    rows = [np.concatenate([_tile(a, size, channels, PER_SIDE), gap, _tile(b, size, channels, PER_SIDE)], axis=1)
            for a, b in zip(left, right)]
    sep = np.full((2, rows[0].shape[1], channels), 255, np.uint8)
    grid = np.concatenate([x for r in rows for x in (r, sep)][:-1], axis=0)
    grid = grid.repeat(SCALE, 0).repeat(SCALE, 1)
    return _png(grid[:, :, 0] if channels == 1 else grid)


def _synthetic_images(cfg: Config, classes: list[str]) -> tuple[list[list], list[list], list[list[str]]]:
    from genaug.synthetic.store import Store

    store = Store(cfg.gen_dir(), classes)
    rows = store.read_rows()
    kept, rejected, reasons = [[] for _ in classes], [[] for _ in classes], [[] for _ in classes]
    for r in rows:
        bucket = kept if r.get("kept") else rejected
        if len(bucket[r["label"]]) < PER_SIDE:
            img = store.read_png(r["label"], r["id"])
            if img is not None:
                bucket[r["label"]].append(img.permute(1, 2, 0).numpy())
                if not r.get("kept"):
                    reasons[r["label"]].append(r.get("reason") or "")
    return kept, rejected, reasons


def _curves(rows: list[dict]) -> bytes | None:
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    loss_keys = [k for k in rows[-1] if k.startswith("loss")]
    evals = [r for r in rows if "fid" in r]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for k in loss_keys:
        axes[0].plot([r["step"] for r in rows if k in r], [r[k] for r in rows if k in r], label=k, lw=0.8)
    axes[0].set_title("training losses")
    axes[0].legend()
    axes[1].plot([r["step"] for r in evals], [r["fid"] for r in evals], marker="o")
    axes[1].set_title(f"FID of EMA samples ({evals[0].get('fid_extractor', '?') if evals else '?'} features)")
    axes[1].set_yscale("log")
    axes[2].plot([r["step"] for r in evals], [r.get("cond_acc") for r in evals], marker="o")
    axes[2].set_title("judge accuracy on samples")
    axes[2].set_ylim(0, 1)
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    return png_bytes(fig)


class Doc:
    """Blocks rendered twice: HTML with embedded images, Markdown with linked ones."""

    def __init__(self, assets: Path):
        self.blocks: list[tuple] = []
        self.assets = assets

    def h(self, text: str) -> None:
        self.blocks.append(("h", text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def pre(self, text: str) -> None:
        self.blocks.append(("pre", text))

    def table(self, head: list[str], rows: list[list]) -> None:
        self.blocks.append(("table", head, [[("-" if v is None else str(v)) for v in r] for r in rows]))

    def img(self, name: str, data: bytes | None, caption: str) -> None:
        if data is None:
            self.p(f"({caption}: not available)")
            return
        atomic_write_bytes(self.assets / name, data)
        self.blocks.append(("img", name, data, caption))

    def html(self, title: str) -> str:
        out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
               "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
               "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
               "th{background:#f3f3f3}pre{background:#f6f6f6;padding:1em;overflow-x:auto}img{max-width:100%;"
               "image-rendering:pixelated}figure{margin:1em 0}figcaption{color:#555;font-size:90%}</style></head><body>",
               f"<h1>{html.escape(title)}</h1>"]
        for b in self.blocks:
            if b[0] == "h":
                out.append(f"<h2>{html.escape(b[1])}</h2>")
            elif b[0] == "p":
                out.append(f"<p>{html.escape(b[1])}</p>")
            elif b[0] == "pre":
                out.append(f"<pre>{html.escape(b[1])}</pre>")
            elif b[0] == "table":
                head = "".join(f"<th>{html.escape(h)}</th>" for h in b[1])
                body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in r) + "</tr>" for r in b[2])
                out.append(f"<table><tr>{head}</tr>{body}</table>")
            else:
                data = base64.b64encode(b[2]).decode()
                out.append(f"<figure><img alt='{html.escape(b[3])}' src='data:image/png;base64,{data}'>"
                           f"<figcaption>{html.escape(b[3])}</figcaption></figure>")
        return "\n".join(out) + "\n</body></html>\n"

    def markdown(self, title: str) -> str:
        out = [f"# {title}", ""]
        for b in self.blocks:
            if b[0] == "h":
                out += [f"## {b[1]}", ""]
            elif b[0] == "p":
                out += [b[1], ""]
            elif b[0] == "pre":
                out += ["```", b[1].rstrip("\n"), "```", ""]
            elif b[0] == "table":
                out += ["| " + " | ".join(b[1]) + " |", "|" + "---|" * len(b[1])]
                out += ["| " + " | ".join(v.replace("|", "\\|") for v in r) + " |" for r in b[2]] + [""]
            else:
                out += [f"![{b[3]}]({self.assets.name}/{b[1]})", "", f"*{b[3]}*", ""]
        return "\n".join(out)


def _load_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _ci(ci: dict | None, signed: bool = False) -> str:
    from genaug.evaluate.stats import fmt

    return "-" if not ci else fmt(ci, signed=signed)


def write_report(cfg: Config) -> Path:
    """Write report.html and report.md for the run; returns the HTML path."""
    from genaug.data import load_data

    run_dir, kind = cfg.run_dir(), cfg.sample.generator
    doc = Doc(run_dir / "report_assets")
    metrics = _load_json(run_dir / "eval" / "metrics.json")
    fidelity = _load_json(cfg.gen_dir() / "fidelity.json")
    best = _load_json(run_dir / kind / "best" / "genaug.json")
    judge = _load_json(run_dir / "judge" / "judge.json")
    data = load_data(cfg.data)
    _summary(doc, cfg, metrics)
    _accuracy(doc, metrics, run_dir / "eval")
    _generator(doc, cfg, best, judge, read_jsonl(run_dir / kind / "metrics.jsonl"))
    _images(doc, cfg, data, fidelity)
    _fidelity(doc, fidelity)
    _explain(doc, cfg, metrics, data)
    _plan(doc, _load_json(run_dir / "plan.json"), _load_json(run_dir / "pipeline.json"))
    _reproduce(doc, cfg)
    title = f"genaug report: run '{cfg.run}' ({kind} on {cfg.data.source})"
    atomic_write_text(run_dir / "report.md", doc.markdown(title))
    atomic_write_text(run_dir / "report.html", doc.html(title))
    return run_dir / "report.html"


def _verdict(g: dict) -> str:
    if g["lo"] is None:
        return "one seed only: no interval"
    if g["lo"] > 0:
        return "a gain: the 95% interval is above zero"
    if g["hi"] < 0:
        return "a loss: the 95% interval is below zero"
    return "no significant difference: the 95% interval contains zero"


def _summary(doc: Doc, cfg: Config, metrics: dict | None) -> None:
    doc.h("Answer")
    if not metrics:
        doc.p("No evaluation yet: run 'genaug eval-classifier' (or 'genaug pipeline').")
        return
    base, arms = metrics["settings"][0], metrics.get("arms") or {}
    strong = (arms.get("strong") or {})
    what = "the external set" if metrics["synthetic"].get("external") else "synthetic images"
    captured = (metrics.get("oracle") or {}).get("captured") or {}
    oracle = {o["mix"]: o for o in (metrics.get("oracle") or {}).get("settings", [])}
    for s in metrics["settings"][1:]:
        g = s["gain_acc"]
        text = (f"Adding {what} at share r = {s['mix']:g} to the strong real-only baseline ({strong.get('sampling', '?')} "
                f"draws + {strong.get('augment', '?')} augmentation): test accuracy {s['test_acc']['mean']:.4f} vs "
                f"{base['test_acc']['mean']:.4f}; paired gain {_ci(g, True)} over {g['n']} seeds: {_verdict(g)}.")
        if s["mix"] in oracle:
            c = captured.get(str(s["mix"])) or {}
            share = f"{c['share']:.2f}" if c.get("share") is not None else (c.get("why") or "n/a")
            text += (f" The oracle (held-out real images in the same slots) gains {_ci(oracle[s['mix']]['gain_acc'], True)}; "
                     f"share of that possible gain the {what} capture: {share}.")
        doc.p(text)
    teacher = metrics.get("teacher") or {}
    for s in teacher.get("settings", []):
        over = (teacher.get("over_condition") or {}).get(str(s["mix"]))
        doc.p(f"Teacher labels (each synthetic image trained on the {teacher['model']}'s soft prediction instead of the "
              f"class it was generated for; its top class disagrees with that class on {teacher['disagree']:.1%} of them): "
              f"{_ci(s['gain_acc'], True)} over the strong baseline at r = {s['mix']:g}"
              + (f"; vs conditioning labels (paired): {_ci(over, True)}: {_verdict(over)}." if over else "."))
    for s in (metrics.get("replace") or {}).get("settings", []):
        doc.p(f"DA-Fusion's protocol (each real image replaced with probability {metrics['replace']['p']:g} by one of its "
              f"own synthetic variants, no extra slots; {metrics['replace']['with_variants']} training images have "
              f"variants): {_ci(s['gain_acc'], True)} over the strong baseline: {_verdict(s['gain_acc'])}.")
    pool = metrics.get("pool") or {}
    for s in pool.get("settings", []):
        over = (pool.get("synthetic_over_pool") or {}).get(str(s["mix"]))
        doc.p(f"The unlabeled pool ({pool['n']} of {pool['pool_size']} images from {pool['source']} with a pseudo-label "
              f"at confidence >= {pool['threshold']:g}) in the same slots, no generator: {_ci(s['gain_acc'], True)} "
              f"over the strong baseline at r = {s['mix']:g}"
              + (f"; synthetic images on top of it (pool + synthetic vs pool alone, paired): {_ci(over, True)}: "
                 f"{_verdict(over)}." if over else "."))
    fm = metrics.get("fixmatch")
    if fm:
        s = fm["settings"][0]
        doc.p(f"The semi-supervised baseline: the strong row trained by FixMatch on the labeled split plus all {fm['n']} "
              f"pool images ({fm['source']}; threshold {fm['threshold']:g}, {fm['mu']} pool images per labeled one), no "
              f"generator: {_ci(s['gain_acc'], True)} over the strong baseline: {_verdict(s['gain_acc'])}.")
        for r, over in (fm.get("synthetic_over_fixmatch") or {}).items():
            doc.p(f"Does generating add anything once the unlabeled images are used well? The FixMatch learner with "
                  f"synthetic images at share r = {float(r):g} of its labeled stream vs FixMatch alone (paired, DPT's "
                  f"setting): {_ci(over, True)}: {_verdict(over)}.")
    if metrics.get("baselines"):
        rb = metrics["baselines"]["strong_over_naive"]["acc"]
        doc.p(f"What rebalancing + augmentation alone give (strong vs naive real-only, no generator involved): "
              f"{_ci(rb, True)}. No part of it is credited to the generator.")
    sens = metrics.get("sensitivity")
    if sens:
        doc.p("Sensitivity: " + sens["text"])
    if metrics.get("budget_limited"):
        doc.p(metrics["budget_limited"])
    if coverage := coverage_text(metrics):
        doc.p(coverage)
    caution = rebalancing_caution(metrics)
    if caution:
        doc.p(caution)
    choice = metrics.get("augment_choice") or {}
    if choice.get("val_acc"):
        doc.p(f"Baseline augmentation: {choice['chosen']}, chosen by {choice['by']} ("
              + ", ".join(f"{k} {v:.4f}" for k, v in choice["val_acc"].items()) + "); every row but the naive one uses it.")
    doc.p(f"Classifier {metrics['model']} ({metrics['strategy']}, {'pretrained' if metrics['pretrained'] else 'from scratch'}), "
          f"{budget_text(metrics)}, batch {metrics['batch_size']}; real training images {metrics['real']['train']}, "
          f"validation {metrics['real']['val']}, test {metrics['real']['test']}; {what} {metrics['synthetic']['n']}"
          + (f" from {metrics['synthetic']['dir']}" if metrics["synthetic"].get("external") else " kept")
          + (". The generator, the judge and the classifier saw only the training split and the unlabeled pool (no "
             "labels of the pool were read); " if metrics.get("pool") else
             ". The generator, the judge and the classifier saw only the training split; ")
          + "checkpoints were chosen on validation; the test split was read once per run, after training.")
    for name, arm in arms.items():
        doc.p(f"Row '{arm['title']}': {arm['explains']}")


def _rows(metrics: dict) -> list[tuple[str, dict]]:
    """(row name, setting) in table order: naive, strong, + synthetic at each r, oracle."""
    chosen = (metrics.get("auto") or {}).get("chosen_mix")
    out = [("naive real-only", metrics["baselines"]["naive"])] if metrics.get("baselines") else []
    for s in metrics["settings"]:
        out.append(("strong real-only (baseline)" if s["mix"] == 0 else "+ synthetic" + (" (auto)" if s["mix"] == chosen else ""), s))
    out += [("oracle (held-out real)", s) for s in (metrics.get("oracle") or {}).get("settings", [])]
    out += [(f"+ synthetic (replace p={metrics['replace']['p']:g})", s)
            for s in (metrics.get("replace") or {}).get("settings", [])]
    pool = metrics.get("pool") or {}
    out += [("+ pseudo-labeled pool", s) for s in pool.get("settings", [])]
    out += [("+ pool + synthetic", s) for s in pool.get("pool_synthetic", [])]
    return out


def _accuracy(doc: Doc, metrics: dict | None, eval_dir: Path) -> None:
    if not metrics:
        return
    doc.h("Accuracy and gain over the strong baseline (mean [95% t-interval] over seeds)")
    doc.table(["row", "mix r", "test accuracy", "macro-F1", "val accuracy", "paired gain (acc.)", "paired gain (F1)",
               "steps used / best step (mean)"],
              [[name, f"{s['mix']:g}", _ci(s["test_acc"]), _ci(s["test_f1"]), _ci(s["val_acc"]),
                _ci(s.get("gain_acc"), True), _ci(s.get("gain_f1"), True), steps_text(s)] for name, s in _rows(metrics)])
    for name, caption in (("accuracy_vs_mix.png", "Test accuracy vs share r (error bars: 95% CI); r = 0 is the strong baseline"),
                          ("per_class_gain.png", "Per-class accuracy gain over the strong real-only baseline")):
        p = eval_dir / name
        doc.img(name, p.read_bytes() if p.is_file() else None, caption)
    last = metrics["settings"][-1]["mix"]
    for r in sorted({0.0, last}):
        p = eval_dir / f"confusion_r{r:g}.png"
        doc.img(p.name, p.read_bytes() if p.is_file() else None, f"Confusion matrix at r = {r:g}, summed over seeds")


def _val(accuracy: float | None) -> str:
    return "n/a (no validation split)" if accuracy is None else f"{accuracy:.4f}"


def _generator(doc: Doc, cfg: Config, best: dict | None, judge: dict | None, rows: list[dict]) -> None:
    doc.h("Generator")
    if judge:
        doc.p(f"Judge {judge['model']}: trained on {judge['train_images']} real training images only; "
              f"validation accuracy {_val(judge['val_accuracy'])}.")
    if cfg.sample.generator == "img2img":
        ic = cfg.img2img
        doc.p(f"Pretrained img2img pipeline {ic.model} (nothing trained): variants of each real training image with "
              f"the prompt '{ic.prompt}' (overrides: {ic.prompts or 'none'}), strengths {list(ic.strengths)}, guidance "
              f"{ic.guidance_scale:g}, {ic.steps} steps; each variant's source image, strength, prompt and seed are in "
              "the manifest.")
        return
    if not best:
        doc.p("No trained generator yet.")
        return
    f = best.get("fidelity") or {}
    doc.p(f"{best.get('kind')} best checkpoint: step {best['step']}"
          + (f", FID {f['fid']:.3f} ({f['extractor']} features, {f['n_fake']} samples vs {f['n_real']} real training images)"
             if f else ""))
    if best.get("init_from"):
        init = best["init_from"]
        doc.p(f"Started from the pretrained UNet {init['source']} (diffusion.init_from; step {init.get('source_step')}"
              f"{', classes ' + ', '.join(init['source_classes']) if init.get('source_classes') else ''}); class "
              f"embedding {init['class_embedding']}; then fine-tuned on this run's training split.")
    judge_pool = (judge or {}).get("self_training")
    if judge_pool:
        doc.p(f"The judge was self-trained on the unlabeled pool ({judge_pool['pool_images']} images, "
              f"{len(judge_pool['rounds'])} FixMatch rounds): val accuracy {_val(judge_pool['supervised_val_accuracy'])} "
              f"from the labeled split alone, {_val(judge['val_accuracy'])} kept.")
    if any("fid_pool" in r for r in rows):
        last = [r for r in rows if "fid_pool" in r][-1]
        doc.p(f"Trained on the labeled split and the unlabeled pool; FID against the pool at step {last['step']}: "
              f"{last['fid_pool']:.3f} ({last['fid_pool_n_real']} pool images).")
    doc.img("training_curves.png", _curves(rows), "Training curves: losses, FID and the judge's accuracy on samples")
    _quality(doc, cfg.run_dir() / cfg.sample.generator / "best")


def _quality(doc: Doc, best: Path) -> None:
    """The quality gate's verdict on best/ (genaug.quality) and its real-vs-synthetic grid."""
    from genaug.quality import QUALITY, describe

    q = _load_json(best / QUALITY)
    if not q:
        return
    doc.p(describe(q, "the grid below"))
    grid = best / q["grid"]
    doc.img("real_vs_synthetic.png", grid.read_bytes() if grid.is_file() else None,
            "Per class a row of real training images, then a row of the generator's (the quality gate's draws)")


def _images(doc: Doc, cfg: Config, data, fidelity: dict | None) -> None:
    if not fidelity:
        doc.h("Synthetic images")
        doc.p("No synthetic data set yet: run 'genaug sample'.")
        return
    kept, rejected, reasons = _synthetic_images(cfg, data.classes)
    train = data.splits["train"]
    real = [[train.images[i] for i in np.flatnonzero(train.labels == c)[:PER_SIDE]] for c in range(data.num_classes)]
    doc.h("Real vs synthetic")
    doc.img("real_vs_synthetic.png", _panel(real, kept, data.image_size, data.channels),
            f"One row per class ({', '.join(data.classes)}): {PER_SIDE} real training images | {PER_SIDE} kept synthetic images")
    doc.h("Kept vs rejected")
    doc.img("kept_vs_rejected.png", _panel(kept, rejected, data.image_size, data.channels),
            "One row per class: kept | rejected by the filters (grey: none)")
    doc.table(["class", "reasons of the rejected shown"], [[c, ", ".join(reasons[i]) or "-"] for i, c in enumerate(data.classes)])


def _fidelity(doc: Doc, fidelity: dict | None) -> None:
    if not fidelity:
        return
    doc.h("Fidelity per class")
    doc.p(f"FID/KID in {fidelity['extractor']} features against each class's real training images; "
          f"before = all generated candidates, after = kept images. Thresholds: {json.dumps(fidelity['thresholds'])}.")

    def f(e, key):
        return None if not e.get(key) else f"{e[key]['fid']:.3f} (n={e[key]['n']})"

    acc = lambda e: None if e.get("cond_acc") is None else f"{e['cond_acc']:.3f}"
    doc.table(["class", "candidates", "conditioning accuracy", "kept", "FID before", "FID after", "KID after", "augmented"],
              [[name, e["candidates"], acc(e), e["kept"], f(e, "before"), f(e, "after"),
                None if not e.get("after") else f"{e['after']['kid']:.4f}",
                "yes" if e["augmented"] else f"no ({e['not_augmented_because']})"] for name, e in fidelity["classes"].items()])
    doc.p("Conditioning accuracy: the share of a class's candidates, before any filter, that the judge assigns to the "
          "class they were drawn for; a low value means the generator cannot draw that class, whatever the filters keep.")
    if missing := unfilled(fidelity):
        doc.p("Classes with no synthetic image: " + "; ".join(missing) + ".")
    if fidelity.get("mean_class_fid_before") is not None:
        doc.p(f"Mean per-class FID over the {fidelity.get('mean_over_classes', '')} classes with both: "
              f"{fidelity['mean_class_fid_before']:.3f} before filtering, {fidelity['mean_class_fid_after']:.3f} after. "
              f"Rejected: {json.dumps(fidelity['reject_reasons'])}.")


def _explain(doc: Doc, cfg: Config, metrics: dict | None, data) -> None:
    if not metrics:
        return
    from genaug.gradcam import panel

    doc.h("Where the classifiers look (Grad-CAM)")
    image, caption = panel(cfg, metrics, data.splits["test"], data.classes)
    if image is None:
        doc.p(caption)
    else:
        doc.img("gradcam.png", image, caption)


def _plan(doc: Doc, plan: dict | None, stamps: dict | None) -> None:
    """The data's fingerprint, the planned values and whose they are, and the time
    estimate beside the measured stage times (``genaug plan``)."""
    if plan is None:
        return
    from genaug.plan import describe_fingerprint

    doc.h("Plan")
    doc.pre(describe_fingerprint(plan["fingerprint"]) + f"\ndevice: {plan['device']['name']} ({plan['device']['kind']})")
    if plan["values"]:
        doc.table(["key", "value", "from", "why"], [[k, json.dumps(v["value"]), v["from"], v["why"]]
                                                   for k, v in plan["values"].items()])
    else:
        doc.p("No rule changed a default: the data has the shape the defaults were tuned for.")
    estimate, stamps = plan.get("estimate_seconds") or {}, stamps or {}
    if estimate:
        doc.table(["stage", "estimated s", "measured s (pipeline.json)"],
                  [[k, f"{v:.0f}", f"{stamps[k]['seconds']:.0f}" if k in stamps else "—"] for k, v in estimate.items()])


def _reproduce(doc: Doc, cfg: Config) -> None:
    doc.h("Reproduce")
    doc.p("The resolved config below is also saved as runs/<run>/config.yaml; this command reruns every stage:")
    doc.pre(f"genaug pipeline --config {cfg.run_dir() / 'config.yaml'} --force")
    doc.pre(cfg.to_yaml())
