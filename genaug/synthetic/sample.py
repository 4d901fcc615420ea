"""``genaug sample`` and ``genaug filter`` (SPEC §4).

``sample`` draws candidates class by class (image i of class c from seed
``image_seed(sample.seed, c, i)``), scores each, writes its PNG and then its manifest
line, and tops up until every class has ``per_class`` images that pass the filters.
A rerun repairs what is missing (same seed -> same image) and generates nothing else;
``filter`` re-decides from the stored scores without generating.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from genaug.progress import progress

from genaug.config import Config
from genaug.data import load_data
from genaug.data.base import LabeledData
from genaug.errors import GenaugError
from genaug.faults import fault_point
from genaug.io import append_jsonl, atomic_write_json, stable_hash, sweep_temp
from genaug.judge import ensure_judge, judge_key, load_judge
from genaug.runs import config_hash
from genaug.synthetic.generators import OpenedGenerator, open_generator
from genaug.synthetic.scores import RealReference, build_reference, score_images
from genaug.synthetic.store import FIDELITY, HEADER, MANIFEST, Store, decide, image_id, image_seed, passing_count


@dataclass
class Context:
    cfg: Config
    data: LabeledData
    store: Store
    judge_dir: object
    judge: tuple
    ref: RealReference

    def radii(self) -> list[float | None]:
        return [self.ref.radius(c, self.cfg.sample.realism_quantile) for c in range(self.data.num_classes)]


def _context(cfg: Config, classes: list[str] | None = None) -> Context:
    data = load_data(cfg.data)
    if classes is not None and classes != data.classes:
        raise GenaugError(f"the generator was trained on classes {classes}, but the configured data "
                          f"({cfg.data.source}) has {data.classes}: pass the config the generator was trained with")
    judge_dir = ensure_judge(cfg, data)
    judge = load_judge(judge_dir)
    ref = build_reference(judge, data.splits["train"], data.num_classes, k=cfg.sample.realism_k)
    return Context(cfg, data, Store(cfg.gen_dir(), data.classes), judge_dir, judge, ref)


def _header(cfg: Config, gen: OpenedGenerator) -> dict:
    return {"generator": gen.describe(), "sampler": gen.settings, "seed": cfg.sample.seed,
            "judge_key": judge_key(cfg), "data_hash": config_hash(cfg, "data"), "classes": gen.classes}


def _check_header(store: Store, header: dict, force: bool, replace_stale: bool = False) -> None:
    path = store.root / HEADER
    old = json.loads(path.read_text()) if path.is_file() else None
    if old == header and not force:
        return
    if old is not None and replace_stale:
        force = True
    if old is not None and not force:
        diff = sorted(k for k in header if old.get(k) != header[k])
        raise GenaugError(f"{store.root} holds images from another generator or settings ({', '.join(diff)} "
                          f"differ); rerun with --force to replace them, or use another --run")
    if force and store.root.exists():
        shutil.rmtree(store.root)
    atomic_write_json(path, header)


def _warn_untrained(checkpoint: Path) -> None:
    """One line when the quality gate called this checkpoint not trained (genaug.quality)."""
    from genaug.quality import QUALITY

    q = json.loads((checkpoint / QUALITY).read_text()) if (checkpoint / QUALITY).is_file() else {}
    if q.get("trained") is False:
        p = q["probe"]
        print(f"warning: the quality gate called {checkpoint} not trained (a real-vs-synthetic probe tells its images "
              f"apart {p['accuracy']:.0%} of the time); sampling it anyway, the evaluation will show what they are worth",
              file=sys.stderr)


def run_sample(cfg: Config, *, which: str | None = None, force: bool = False, replace_stale: bool = False) -> dict:
    """Generate, score, filter and top up ``gen_dataset/<run>/``; returns fidelity.json.
    Images from another generator or settings are an error, or deleted first with
    ``force`` / ``replace_stale``. Under ``accelerate launch`` the processes split the
    classes (every image depends only on its class, index and seed, so the data set
    is the one a single process writes) and rank 0 decides and writes the manifest."""
    state = PartialState()
    gen = open_generator(cfg, which)
    ctx = _context(cfg, gen.classes)
    if state.is_main_process:
        _warn_untrained(gen.path)
        _check_header(ctx.store, _header(cfg, gen), force, replace_stale)
        sweep_temp(ctx.store.root)
        ctx.store.clean(ctx.store.read_rows(scored=True))
    state.wait_for_everyone()
    labels = list(range(state.process_index, ctx.data.num_classes, state.num_processes))
    rows = [r for r in ctx.store.read_rows(scored=True) if r["label"] in labels]
    counts = [_repair(ctx, gen, rows), _top_up(ctx, gen, rows, labels, show=state.is_main_process)]
    if state.num_processes > 1:
        counts = [sum(c) for c in zip(*gather_object([counts]))]
    state.wait_for_everyone()
    result = finalise(ctx, ctx.store.read_rows(scored=True)) if state.is_main_process else None
    state.wait_for_everyone()
    if result is None:
        result = json.loads((ctx.store.root / FIDELITY).read_text())
    result["run"] = {"generated": counts[1], "repaired": counts[0]}
    return result


def run_filter(cfg: Config) -> dict:
    """Re-decide kept/rejected from the stored scores with the config's thresholds."""
    header_path = cfg.gen_dir() / HEADER
    if not (cfg.gen_dir() / MANIFEST).is_file() or not header_path.is_file():
        raise GenaugError(f"no synthetic data set at {cfg.gen_dir()}: run 'genaug sample' first")
    ctx = _context(cfg, json.loads(header_path.read_text()).get("classes"))
    sweep_temp(ctx.store.root)
    rows = ctx.store.read_rows(scored=True)
    missing = [r["id"] for r in rows if ctx.store.locate(r["label"], r["id"]) is None]
    if missing:
        raise GenaugError(f"{len(missing)} image(s) of the manifest are missing (e.g. {missing[0]}): "
                          "run 'genaug sample' to restore them")
    return finalise(ctx, rows)


def _draw_and_score(ctx: Context, gen: OpenedGenerator, label: int, indices: list[int]) -> tuple[torch.Tensor, list[dict]]:
    labels = torch.full((len(indices),), label, dtype=torch.long)
    seeds = [image_seed(ctx.cfg.sample.seed, label, i) for i in indices]
    plans = [gen.plan(label, i) for i in indices] if gen.plan else [{} for _ in indices]
    images = gen.images(labels, seeds, plans)  # (n, C, H, W) uint8
    scores = score_images(images, labels, ctx.judge, ctx.ref)
    rows = [{"id": image_id(label, i), "path": "", "label": label, "class_name": ctx.data.classes[label], "index": i,
             "seed": s, "generator": gen.describe(), "sampler": gen.settings, **plan, **sc}
            for i, s, plan, sc in zip(indices, seeds, plans, scores)]
    return images, rows


def _repair(ctx: Context, gen: OpenedGenerator, rows: list[dict]) -> int:
    """Regenerate (from their seeds) the images whose PNG is missing or unreadable."""
    broken = [r for r in rows if ctx.store.read_png(r["label"], r["id"]) is None]
    for label in sorted({r["label"] for r in broken}):
        todo = [r for r in broken if r["label"] == label]
        for start in range(0, len(todo), ctx.cfg.sample.batch_size):
            chunk = todo[start : start + ctx.cfg.sample.batch_size]
            # Same seed, same image: the stored scores still hold (re-scoring a different
            # batch could move them in the last digit on some CPUs).
            plans = [gen.plan(label, r["index"]) for r in chunk] if gen.plan else None
            images = gen.images(torch.full((len(chunk),), label, dtype=torch.long), [r["seed"] for r in chunk], plans)
            for img, row in zip(images, chunk):
                ctx.store.write_png(img, label, row["id"], bool(row.get("kept")))
    if broken:
        print(f"restored {len(broken)} missing or unreadable image(s) from their seeds")
    return len(broken)


def _top_up(ctx: Context, gen: OpenedGenerator, rows: list[dict], labels: list[int], show: bool = True) -> int:
    """Draw new candidates for each of ``labels`` until ``per_class`` pass the filters
    (or the cap); ``rows`` gains the new rows."""
    added = 0
    with progress(total=ctx.cfg.sample.per_class * len(labels), desc="sample", unit="img", disable=not show) as bar:
        for label in labels:
            mine = [r for r in rows if r["label"] == label]
            added += _top_up_class(ctx, gen, label, mine, bar)
            rows[:] = [r for r in rows if r["label"] != label] + mine
    rows.sort(key=lambda r: (r["label"], r["index"]))
    return added


def _top_up_class(ctx: Context, gen: OpenedGenerator, label: int, mine: list[dict], bar) -> int:
    """One class's top-up; appends the new rows to ``mine``, returns how many were drawn."""
    sc, added = ctx.cfg.sample, 0
    radius = ctx.ref.radius(label, sc.realism_quantile)  # this class only, not all of ctx.radii()
    ok = passing_count(mine, label, radius, sc, filtering=sc.filter)
    bar.update(min(ok, sc.per_class))
    cap = sc.per_class * (sc.max_tries if sc.filter else 1)
    while ok < sc.per_class and len(mine) < cap:
        rate = ok / len(mine) if mine else 1.0
        n = min(sc.batch_size, cap - len(mine), math.ceil((sc.per_class - ok) / max(rate, 0.05) * 1.1) + 2)
        start = max((r["index"] for r in mine), default=-1) + 1
        images, fresh = _draw_and_score(ctx, gen, label, list(range(start, start + n)))
        for img, row in zip(images, fresh):
            row["kept"] = passing_count([row], label, radius, sc, filtering=sc.filter) == 1
            row["reason"] = None if row["kept"] else "provisional"
            ctx.store.write_png(img, label, row["id"], row["kept"])  # the PNG first, then its line
            append_jsonl(ctx.store.root / MANIFEST, row)
        mine += fresh
        added += n
        new_ok = passing_count(mine, label, radius, sc, filtering=sc.filter)
        bar.update(min(new_ok, sc.per_class) - min(ok, sc.per_class))
        bar.set_postfix({"class": ctx.data.classes[label][:12], "tried": len(mine)})
        ok = new_ok
    return added


def finalise(ctx: Context, rows: list[dict]) -> dict:
    """Decide kept/rejected, gate classes by FID, move PNGs, rewrite the manifest and
    fidelity.json. Idempotent: a second call with the same inputs writes nothing."""
    sc, store = ctx.cfg.sample, ctx.store
    short = decide(rows, ctx.radii(), sc, filtering=sc.filter)
    decision = stable_hash({"rows": [(r["id"], r["kept"]) for r in rows], "extractor": sc.fid_extractor,
                            "judge": judge_key(ctx.cfg)})
    old = json.loads((store.root / FIDELITY).read_text()) if (store.root / FIDELITY).is_file() else {}
    per_class = old["classes"] if old.get("decision_hash") == decision else _class_fidelity(ctx, rows)
    gated = []
    for label, name in enumerate(ctx.data.classes):
        entry = per_class[name]
        after = entry.get("after") or {}
        entry["kept"] = sum(r["kept"] for r in rows if r["label"] == label)
        if sc.max_class_fid is not None and entry["kept"] and after.get("fid", 0.0) > sc.max_class_fid:
            gated.append(label)
            for r in rows:
                if r["label"] == label and r["kept"]:
                    r["kept"], r["reason"] = False, "class_fid"
            entry["kept"] = 0
        entry["augmented"] = entry["kept"] > 0
        entry["not_augmented_because"] = ("class_fid" if label in gated else "class_short" if label in short else None)
        entry |= _conditioning([r for r in rows if r["label"] == label], label, ctx.data.classes)
    for r in rows:
        r["path"] = store.rel(r["label"], r["id"], r["kept"])
        store.move(r)
    fault_point("finalise")  # PNGs moved, manifest not yet rewritten: locate() finds either folder
    store.write_rows(rows)
    result = _fidelity_summary(ctx, per_class, decision, rows)
    if old != result:
        atomic_write_json(store.root / FIDELITY, result)
    return result


def _class_fidelity(ctx: Context, rows: list[dict]) -> dict:
    """Per class: FID/KID of all candidates (before) and of the kept ones (after)
    against that class's real training images, with the image counts."""
    from genaug.fidelity import fidelity

    train, out = ctx.data.splits["train"], {}
    for label, name in enumerate(progress(ctx.data.classes, desc="per-class FID", unit="class", leave=False)):
        real = torch.from_numpy(train.images[train.labels == label]).permute(0, 3, 1, 2)
        mine = [r for r in rows if r["label"] == label]
        entry = {"label": label, "n_real": len(real), "candidates": len(mine)}
        for key, subset in (("before", mine), ("after", [r for r in mine if r["kept"]])):
            imgs = [ctx.store.read_png(label, r["id"]) for r in subset]
            imgs = [i for i in imgs if i is not None]
            entry[key] = None
            if len(imgs) >= 2 and len(real) >= 2:
                m = fidelity(torch.stack(imgs), real, extractor=ctx.cfg.sample.fid_extractor, judge_dir=ctx.judge_dir,
                             reference=f"train[{name}]")
                entry[key] = {"fid": m["fid"], "kid": m["kid_mean"], "kid_std": m["kid_std"], "n": m["n_fake"]}
        out[name] = entry
    return out


def _conditioning(mine: list[dict], label: int, classes: list[str]) -> dict:
    """Conditioning accuracy of one class's candidates, before any filter: the share the
    judge assigns to the class they were drawn for; the class most others went to; the
    candidates' reject reasons."""
    if not mine:
        return {"cond_acc": None, "drawn_as": None, "rejected": {}}
    others = Counter(r["judge_pred"] for r in mine if r["judge_pred"] != label)
    rejected = Counter(r["reason"] for r in mine if r["reason"] not in (None, "surplus", "class_short"))
    return {"cond_acc": round(1 - sum(others.values()) / len(mine), 4),
            "drawn_as": classes[others.most_common(1)[0][0]] if others else None, "rejected": dict(rejected)}


def unfilled(result: dict) -> list[str]:
    """One line per class that got no synthetic image, saying why."""
    th, lines = result["thresholds"], []
    for name, e in result["classes"].items():
        if e.get("augmented", e["kept"] > 0):
            continue
        why = e.get("not_augmented_because")
        if why == "class_fid":
            lines.append(f"{name}: its kept images' FID {e['after']['fid']:.3f} is above max_class_fid {th['max_class_fid']}")
            continue
        acc, cand = e.get("cond_acc"), e["candidates"]
        text = f"{name}: fewer than {th['per_class']} of {cand} candidates passed the filters"
        if acc is not None and acc < 0.8:
            text += (f"; the judge read {1 - acc:.0%} of them as another class (mostly {e['drawn_as']!r}): the "
                     "generator does not draw this class reliably (conditioning accuracy below 0.8)")
        if e.get("rejected"):
            text += "; rejected: " + ", ".join(f"{k} {v}" for k, v in sorted(e["rejected"].items(), key=lambda kv: -kv[1]))
        lines.append(text)
    return lines


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _fidelity_summary(ctx: Context, per_class: dict, decision: str, rows: list[dict]) -> dict:
    sc = ctx.cfg.sample
    both = [e for e in per_class.values() if e.get("before") and e.get("after")]
    reasons: dict[str, int] = {}
    for r in rows:
        if r["reason"]:
            reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    return {
        "extractor": "judge (genaug-judge)" if sc.fid_extractor == "judge" else "inception-v3-compat",
        "reference": "real training split, per class", "decision_hash": decision,
        "thresholds": {"filter": sc.filter, "min_confidence": sc.min_confidence, "realism_quantile": sc.realism_quantile,
                       "realism_k": sc.realism_k, "near_copy_distance": sc.near_copy_distance,
                       "max_class_fid": sc.max_class_fid, "per_class": sc.per_class},
        # means over the classes that have both numbers, so a dropped class cannot flatter "after"
        "mean_class_fid_before": _mean([e["before"]["fid"] for e in both]),
        "mean_class_fid_after": _mean([e["after"]["fid"] for e in both]),
        "mean_over_classes": len(both),
        "generated": len(rows), "kept": sum(r["kept"] for r in rows), "reject_reasons": reasons,
        # unfiltered candidates the judge assigns to the class they were drawn for
        "cond_acc": round(sum(r["judge_pred"] == r["label"] for r in rows) / len(rows), 4) if rows else None,
        "min_class_cond_acc": min((e["cond_acc"] for e in per_class.values() if e.get("cond_acc") is not None),
                                  default=None),
        "unfilled": [name for name, e in per_class.items() if not e["kept"]],
        "realism_off": [ctx.data.classes[c] for c in ctx.ref.realism_off()],  # one training image: no radius
        "classes": per_class,
    }


def summarise_fidelity(result: dict) -> str:
    """The per-class table printed after sampling / filtering."""
    lines = [f"{'class':<14} {'tried':>6} {'kept':>5} {'cond':>5}  FID before -> after ({result['extractor']}, vs train)"]
    for name, e in result["classes"].items():
        b, a = (e.get("before") or {}).get("fid"), (e.get("after") or {}).get("fid")
        acc = e.get("cond_acc")
        note = f"  not augmented: {e['not_augmented_because']}" if e.get("not_augmented_because") else ""
        lines.append(f"{name[:14]:<14} {e['candidates']:>6} {e['kept']:>5} {'-' if acc is None else f'{acc:.2f}':>5}  "
                     f"{'-' if b is None else f'{b:.3f}'} -> {'-' if a is None else f'{a:.3f}'}{note}")
    lines.append("cond: the share of a class's unfiltered candidates the judge assigns to that class")
    mb, ma = result["mean_class_fid_before"], result["mean_class_fid_after"]
    if mb is not None and ma is not None:
        lines.append(f"mean per-class FID over {result['mean_over_classes']} classes {mb:.3f} -> {ma:.3f}; kept {result['kept']} of {result['generated']} "
                     f"generated; rejected: " + (", ".join(f"{k} {v}" for k, v in result["reject_reasons"].items()) or "none"))
    if missing := unfilled(result):
        lines.append(f"{len(missing)} class(es) got no synthetic image:")
        lines += [f"  {line}" for line in missing]
    if result.get("realism_off"):
        lines.append(f"realism filter off for {', '.join(result['realism_off'])}: one training image, so no real "
                     "class region to compare with (judge confidence and near-copy filters still apply)")
    return "\n".join(lines)
