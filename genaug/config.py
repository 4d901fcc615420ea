"""Typed configuration (SPEC §7).

A config is YAML parsed into pydantic models that forbid unknown keys; every error
names the dotted key (``gan.lr``) and what was wrong. ``Config()`` with no arguments
is the built-in default: embedded ``mnist5k``, a small conditional DCGAN, run
``default``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from genaug.errors import ConfigError


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Section):
    source: str = Field("mnist5k", description="built-in source name or ImageFolder path")
    root: Optional[str] = Field(None, description="where a built-in source's files live")
    image_size: Optional[int] = Field(None, ge=8, le=1024, description="resize to this (square); None keeps the native size")
    channels: Optional[Literal[1, 3]] = Field(None, description="1 = grayscale, 3 = RGB; None keeps the source's mode")
    val_fraction: float = Field(0.1, ge=0.0, lt=0.9)
    test_fraction: float = Field(0.2, ge=0.0, lt=0.9, description="only used when the source has no test split")
    split_seed: int = Field(0, ge=0)
    real_per_class: Optional[int] = Field(None, ge=1, description="keep only K training images per class")
    imbalance: Optional[float] = Field(None, gt=0.0, le=1.0, description="long-tailed training split: the last class "
                                       "keeps this share of the largest one (exponential profile); None = as is")
    hold_out: float = Field(0.0, ge=0.0, lt=0.9, description="set aside this share of each class's training images "
                            "(seeded, after real_per_class / imbalance) as held-out real images: the oracle row's; "
                            "the plan sets it when the training split is large enough (genaug.plan)")
    unlabeled: Optional[str] = Field(None, description="an unlabeled pool from the same domain: 'rest' (the training-"
                                     "pool images real_per_class / imbalance left out, labels dropped), a built-in "
                                     "source split ('fashion-mnist:train'), or a folder of images in any layout")
    unlabeled_max: Optional[int] = Field(None, ge=1, description="keep at most this many pool images (seeded)")
    skip_bad_images: bool = False
    download: bool = Field(True, description="allow torchvision downloads for online sources")


class GanConfig(Section):
    z_dim: int = Field(64, ge=1, le=1024)
    g_channels: int = Field(32, ge=4, le=1024)
    d_channels: int = Field(32, ge=4, le=1024)
    loss: Literal["hinge", "nonsat"] = "hinge"
    aux_weight: float = Field(1.0, ge=0.0, description="auxiliary-classifier loss weight; 0 = projection only")
    class_balance: Literal["balanced", "natural"] = Field("balanced", description="balanced = each batch draws a class "
                                                          "uniformly, then one of its images (tail classes are seen as "
                                                          "often as head ones); natural = images uniformly")
    long_tail: Literal["none", "gsr"] = Field("none", description="gsr = group spectral regularisation of the class-"
                                              "conditional BatchNorm gains and biases (Rangwani et al., ECCV 2022)")
    gsr_weight: float = Field(0.5, ge=0.0, description="gSR: the penalty's weight (the paper's sn_reg_weight)")
    gsr_beta: float = Field(0.999, ge=0.0, lt=1.0, description="gSR: effective-number beta; rarer classes get larger "
                            "per-class weights, proportional to 1 / effective number of images")
    diffaugment: str = Field("translation,cutout", description="comma list of translation,cutout,color; '' = off")
    steps: int = Field(3000, ge=1)
    batch_size: int = Field(32, ge=2, le=4096)
    lr_g: float = Field(2e-4, gt=0, lt=1)
    lr_d: float = Field(2e-4, gt=0, lt=1)
    betas: tuple[float, float] = (0.0, 0.99)
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0)
    eval_every: int = Field(500, ge=1)
    checkpoint_every: int = Field(500, ge=1)
    fid_samples: int = Field(1000, ge=10)
    fid_extractor: Literal["judge", "inception"] = "judge"
    log_every: int = Field(50, ge=1)
    best_cond_acc: float = Field(0.9, ge=0.0, le=1.0, description="best/ = the lowest-FID evaluation among those that "
                                 "draw every class with at least this conditioning accuracy (the judge's, on the "
                                 "evaluation samples); until one does, the lowest FID")
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"


class DiffusionConfig(Section):
    init_from: Optional[str] = Field(None, description="start from this pretrained diffusers UNet2DModel (a "
                                     "save_pretrained folder such as runs/<run>/diffusion/best, or a hub id when online); "
                                     "its architecture replaces block_channels / layers_per_block")
    block_channels: tuple[int, ...] = (32, 64, 64)
    layers_per_block: int = Field(1, ge=1, le=4)
    prediction_type: Literal["epsilon", "v_prediction"] = "v_prediction"  # epsilon + cosine breaks DDIM/DPM++ here
    num_train_timesteps: int = Field(1000, ge=10)
    cfg_dropout: float = Field(0.1, ge=0.0, lt=1.0)
    class_balance: Literal["balanced", "natural"] = Field("balanced", description="balanced = each batch draws a class "
                                                          "uniformly, then one of its images; natural = images uniformly")
    long_tail: Literal["none", "cbdm"] = Field("none", description="cbdm = the class-balancing regulariser of Qin et al. "
                                               "(CVPR 2023): the prediction for a class is pulled towards the prediction "
                                               "for a random other class at the same noisy input, more at high noise")
    cbdm_tau: float = Field(1.0, ge=0.0, description="CBDM: the regulariser's weight (tau)")
    steps: int = Field(6000, ge=1)
    batch_size: int = Field(64, ge=2, le=4096)
    lr: float = Field(2e-4, gt=0, lt=1)
    warmup_steps: int = Field(200, ge=0)
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0)
    eval_every: int = Field(1000, ge=1)
    checkpoint_every: int = Field(1000, ge=1)
    fid_samples: int = Field(1000, ge=10)
    log_every: int = Field(50, ge=1)
    sampler: Literal["ddim", "dpm++"] = "dpm++"
    sample_steps: int = Field(25, ge=1, le=1000)
    guidance_scale: float = Field(2.0, ge=0.0, le=50.0)
    best_cond_acc: float = Field(0.9, ge=0.0, le=1.0, description="best/ = the lowest-FID evaluation among those that "
                                 "draw every class with at least this conditioning accuracy (the judge's, on the "
                                 "evaluation samples); until one does, the lowest FID")
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"


class JudgeConfig(Section):
    """The classifier behind the confidence filter and the domain FID extractor.
    It is trained on the real training split only."""

    model: str = "resnet_small28"
    steps: int = Field(400, ge=1)
    batch_size: int = Field(64, ge=2)
    lr: float = Field(2e-3, gt=0, lt=1)
    eval_every: int = Field(100, ge=1)
    self_training: int = Field(0, ge=0, le=20, description="rounds of FixMatch-style self-training on the unlabeled "
                               "pool (confident weak-view pseudo-labels train the strong view), the best round by "
                               "val accuracy kept; 0 = the judge learns from the labeled split only")
    self_training_threshold: float = Field(0.95, gt=0.0, le=1.0, description="FixMatch confidence threshold")
    self_training_weight: float = Field(1.0, ge=0.0, description="weight of the pool's loss in self-training")


class QualityConfig(Section):
    """The quality gate run on a generator's best/ after training (genaug.quality)."""

    probe_images: int = Field(500, ge=8, description="real training images (and as many synthetic ones, same class "
                              "mix) for the real-vs-synthetic probe")
    probe_steps: int = Field(40, ge=1, description="the probe's training steps (the judge's model and trainer): a "
                             "weak probe on purpose, which separates noise-like images at once and usable but "
                             "imperfect ones only partly (a long-trained probe separates every DCGAN measured)")
    probe_max: float = Field(0.95, gt=0.5, le=1.0, description="a probe test accuracy at or above this calls the "
                             "generator not trained")
    inception_images: int = Field(200, ge=0, description="images per side for Inception FID/KID; 0 = skip")


class PoolConfig(Section):
    """How generators and the control rows use the unlabeled pool (``data.unlabeled``)."""

    threshold: float = Field(0.9, ge=0.0, le=1.0, description="a pool image trains a generator's class conditioning "
                             "(and joins the pseudo-labeled-pool row) when the judge's confidence is at least this; "
                             "below it, it trains the diffusion model as the null class and the GAN not at all")
    share: float = Field(0.5, ge=0.0, lt=1.0, description="share of each generator batch drawn from the pool")
    weight: float = Field(1.0, ge=0.0, description="diffusion loss weight of a pool image (labeled images: 1)")
    labeler: Literal["judge", "fixmatch"] = Field(
        "judge", description="who pseudo-labels the pool for the generators and the pool rows: the judge (trained on the "
        "labeled split, plus judge.self_training rounds), or fixmatch = DPT's loop: the evaluation's FixMatch learner "
        "(eval.model trained on labeled + pool by FixMatch, converged on val, seed = seed), trained in the train stage "
        "before the generator; it is then also the teacher of eval.synthetic_labels=teacher. Set pool.threshold to "
        "its confidence threshold (eval.fixmatch_threshold, 0.95) to use DPT's")


class Img2ImgConfig(Section):
    """A pretrained text-to-image img2img pipeline as the generator (``sample.generator: img2img``)."""

    model: Optional[str] = Field(None, description="a diffusers (Stable-Diffusion-style) img2img pipeline folder, "
                                 "or a hub id when online")
    prompt: str = Field("a photo of a {name}", description="prompt template; {name} is the class name")
    prompts: dict[str, str] = Field(default_factory=dict, description="per-class prompt overrides, by class name")
    negative_prompt: str = ""
    strengths: tuple[float, ...] = Field((0.25, 0.5, 0.75, 1.0), description="img2img strengths, cycled per variant")
    guidance_scale: float = Field(7.5, ge=0.0, le=50.0)
    steps: int = Field(25, ge=1, le=1000, description="inference steps at strength 1 (fewer at lower strength)")
    scheduler: Literal["pipeline", "ddim", "dpm++"] = Field("pipeline", description="the pipeline's own, or replace it")
    resolution: Optional[int] = Field(None, ge=8, le=2048, description="the pipeline's working size; None = its UNet's")
    batch_size: int = Field(8, ge=1, le=1024)

    @field_validator("strengths")
    @classmethod
    def _strengths(cls, value: tuple[float, ...]) -> tuple[float, ...]:
        if not value or any(not 0.0 < v <= 1.0 for v in value):
            raise ValueError("strengths must be a non-empty list of values in (0, 1]")
        return value


class SampleConfig(Section):
    generator: Literal["gan", "diffusion", "img2img"] = "gan"
    checkpoint: str = Field("best", description="best, last, or a path")
    per_class: int = Field(200, ge=1)
    batch_size: int = Field(256, ge=1)
    filter: bool = True
    min_confidence: float = Field(0.5, ge=0.0, le=1.0)
    realism_quantile: float = Field(0.95, gt=0.0, le=1.0)
    realism_k: int = Field(5, ge=1, le=100)
    near_copy_distance: float = Field(0.0, ge=0.0, le=1.0, description="RMS pixel distance in [0, 1]; 0 = off")
    max_class_fid: Optional[float] = Field(None, gt=0)
    max_tries: int = Field(10, ge=1, le=1000, description="candidates drawn per kept image at most, per class")
    fid_extractor: Literal["judge", "inception"] = "judge"
    seed: int = Field(0, ge=0, le=2**22)


class EvalConfig(Section):
    """The classifier whose accuracy gain is measured (SPEC §5)."""

    model: str = "resnet18"
    model_kwargs: dict[str, Any] = Field(default_factory=dict, description="extra timm create_model arguments")
    pretrained: bool = False
    pretrained_file: Optional[str] = None
    image_size: Optional[int] = Field(None, ge=8, le=1024, description="None: the model's own (pretrained) or the data's")
    strategy: Literal["full", "linear", "last_n", "attention", "lora"] = "full"
    last_n: int = Field(1, ge=1)
    lora_rank: int = Field(8, ge=1, le=256)
    mix: str = Field("0.3", description="a share r in [0,1], a comma list, or 'auto'")
    auto_candidates: tuple[float, ...] = (0.1, 0.3, 0.5)

    @field_validator("mix", mode="before")
    @classmethod
    def _mix_text(cls, value: Any) -> Any:
        """``--set eval.mix=0.3`` arrives as a YAML number; keep the text form."""
        return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value
    seeds: int = Field(3, ge=1, le=100)
    steps: Optional[int] = Field(None, ge=1, description="a fixed budget: exactly this many steps per row, cosine "
                                 "schedule, best-val weights tested; None = the converged protocol (epochs, min_steps, "
                                 "max_steps, patience, lr_cuts)")
    epochs: float = Field(100.0, gt=0, description="converged protocol: each row's step cap is this many epochs of its "
                          "own data (real + extra images), clamped to [min_steps, max_steps]")
    min_steps: int = Field(3000, ge=1, description="converged protocol: the smallest step cap of a row")
    max_steps: int = Field(8000, ge=1, description="converged protocol: the largest step cap of a row")
    schedule: Literal["plateau", "cosine"] = Field("plateau", description="converged protocol: plateau = constant "
                                                   "learning rate cut 10x on each val plateau (lr_cuts), then stop; "
                                                   "cosine = cosine over the row's cap, stop on a plateau")
    lr_cuts: int = Field(1, ge=0, le=5, description="converged protocol: on a val plateau (patience evaluations without "
                         "improvement) the learning rate is cut 10x this many times; the next plateau stops the row")
    ema: bool = Field(True, description="validate, select and test an exponential moving average of the weights "
                      "(timm's ModelEmaV3 with warm-up), as FixMatch and timm's train.py do: a smoother val curve, so "
                      "the plateau rule and the best-val pick follow the trend rather than one noisy check")
    ema_decay: float = Field(0.999, ge=0.0, lt=1.0, description="the EMA's largest decay (warm-up: 1 - (1 + t)^-2/3)")
    workers: Union[int, Literal["auto"]] = Field("auto", description="processes that train runs at once (each with "
                                                 "cores / workers threads); auto = one per core when the pending runs "
                                                 "are long enough to repay a process start")
    batch_size: int = Field(64, ge=2)
    lr: float = Field(1e-3, gt=0, lt=10)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    weight_decay: float = Field(0.05, ge=0)
    warmup_steps: int = Field(50, ge=0)
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    mixup: float = Field(0.0, ge=0.0)
    cutmix: float = Field(0.0, ge=0.0)
    augment: Literal["auto", "none", "shift", "shift_flip", "randaugment", "randaugment_noflip"] = Field(
        "auto", description="the strong baseline's (and every row's but naive) augmentation. shift: random 2 px "
        "shifts; shift_flip: + horizontal flips; randaugment: + flips and 2 RandAugment ops per image (magnitude 9/30); "
        "randaugment_noflip: shifts + the 2 ops, no flips; auto: the candidate with the best val accuracy of the strong "
        "row (first seed), chosen once per evaluation")
    augment_candidates: tuple[Literal["none", "shift", "shift_flip", "randaugment", "randaugment_noflip"], ...] = Field(
        ("none", "shift", "shift_flip", "randaugment", "randaugment_noflip"), min_length=1,
        description="the menu eval.augment=auto chooses from (ties go to the earlier one)")
    real_sampling: Literal["uniform", "balanced"] = Field(
        "balanced", description="the strong baseline's real draws: over classes first (balanced) or uniformly over images")
    naive_augment: Literal["none", "shift", "shift_flip", "randaugment", "randaugment_noflip"] = Field(
        "shift", description="the naive real-only row's augmentation (its draws are always uniform over images)")
    synthetic_dir: Optional[str] = Field(None, description="evaluate this labeled ImageFolder as the synthetic set "
                                         "instead of gen_dataset/<run> (any generator's output; no manifest needed)")
    replace_prob: Optional[float] = Field(None, gt=0.0, le=1.0, description="DA-Fusion's protocol as an extra row: "
                                          "each real image drawn is replaced, with this probability, by one of its own "
                                          "synthetic variants (img2img manifests record each variant's source image)")
    oracle: bool = Field(True, description="run the oracle row (held-out real images in the synthetic slots) when "
                         "real labeled training images are left unused")
    oracle_dir: Optional[str] = Field(None, description="an ImageFolder of extra labeled real images for the oracle "
                                      "row (default: the training-pool images real_per_class / imbalance left out)")
    fixmatch: bool = Field(True, description="with an unlabeled pool, a '+ pool (FixMatch)' row: the strong baseline "
                           "trained on labeled + pool images by FixMatch (Sohn et al. 2020), the semi-supervised learner "
                           "every pool-using row is compared with")
    fixmatch_threshold: float = Field(0.95, gt=0.0, le=1.0, description="FixMatch: a pool image's weak-view prediction "
                                      "trains its strong view only at this confidence or above (the paper's tau)")
    fixmatch_mu: int = Field(7, ge=1, le=64, description="FixMatch: pool images per labeled image in each batch (mu)")
    fixmatch_weight: float = Field(1.0, ge=0.0, description="FixMatch: weight of the pool's loss (lambda_u)")
    synthetic_labels: Literal["condition", "teacher"] = Field(
        "condition", description="condition: synthetic images train with the class they were generated for; teacher: "
        "also a '+ synthetic (teacher labels)' row, where each synthetic image trains with the teacher's soft prediction "
        "instead (knowledge distillation, He et al. 2023): the judge, or the FixMatch learner with pool.labeler=fixmatch; "
        "the report says how often teacher and condition disagree")
    eval_every: int = Field(100, ge=1, description="val accuracy every N steps; the best-val weights are tested")
    patience: int = Field(5, ge=1, description="converged protocol: evaluations without val improvement that make a "
                          "plateau (cut the learning rate, or stop the row); a fixed eval.steps never stops early")
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    channels_last: bool = Field(True, description="conv weights in channels-last memory format (~25% faster on CPU)")


class PathsConfig(Section):
    runs_dir: str = "runs"
    gen_dir: str = "gen_dataset"
    reuse_from: list[str] = Field(
        [], description="other runs under runs_dir whose cached results this run copies instead of training them "
        "again: the judge, the FixMatch learner, the pool's labels and evaluation rows, each only where its key (all "
        "it depends on: data, settings, seed, the exact extra images) equals this run's. Two runs of one split that "
        "differ in the generator share their judge and real-only rows this way")


class Config(Section):
    run: str = Field("default", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    seed: int = Field(0, ge=0)
    # The built-in default run (configs/mnist5k_gan.yaml spells it out): a long-tailed
    # MNIST-5k training split and settings sized for <= 10 minutes of `genaug pipeline`
    # on a 2-core CPU. A config file and --set start from these values key by key (see resolve_config).
    data: DataConfig = DataConfig(imbalance=0.05)
    gan: GanConfig = GanConfig(lr_g=8e-4, lr_d=8e-4, aux_weight=1.0, diffaugment="translation,cutout,color", steps=1600,
                               eval_every=400, checkpoint_every=400, fid_samples=500)
    diffusion: DiffusionConfig = DiffusionConfig()
    judge: JudgeConfig = JudgeConfig(lr=4e-3, steps=400)
    pool: PoolConfig = PoolConfig()
    quality: QualityConfig = QualityConfig()
    img2img: Img2ImgConfig = Img2ImgConfig()
    sample: SampleConfig = SampleConfig(min_confidence=0.6)
    eval: EvalConfig = EvalConfig(model="resnet_fast28", lr=4e-3, batch_size=64, eval_every=50, seeds=3, mix="0.5")
    paths: PathsConfig = PathsConfig()

    def run_dir(self) -> Path:
        return Path(self.paths.runs_dir) / self.run

    def gen_dir(self) -> Path:
        return Path(self.paths.gen_dir) / self.run

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _format_validation_error(err: ValidationError) -> str:
    """One line per problem, naming the dotted key."""
    parts = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<root>"
        if e["type"] == "extra_forbidden":
            parts.append(f"unknown config key '{key}'")
        else:
            parts.append(f"config key '{key}': {e['msg']} (got {e.get('input')!r})")
    return "; ".join(parts)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"gan.lr_g=1e-4"`` -> (["gan", "lr_g"], 1e-4). Values are parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set expects section.key=value, got {text!r}")
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"--set expects section.key=value, got {text!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return path, value


def _set_nested(tree: dict, path: list[str], value: Any, dotted: str) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            raise ConfigError(f"config key '{dotted}': '{part}' is not a section")
        node = child
    node[path[-1]] = value


def unknown_keys(model: type[BaseModel], tree: dict, prefix: str = "") -> list[str]:
    """Full dotted paths of keys in ``tree`` that ``model`` does not define."""
    bad = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        field = model.model_fields.get(str(key))
        if field is None:
            bad += [f"{dotted}.{k}" for k in _leaves(value)] if isinstance(value, dict) and value else [dotted]
        elif isinstance(value, dict) and isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            bad += unknown_keys(field.annotation, value, dotted + ".")
    return bad


def _leaves(tree: dict) -> list[str]:
    out = []
    for k, v in tree.items():
        out += [f"{k}.{leaf}" for leaf in _leaves(v)] if isinstance(v, dict) and v else [str(k)]
    return out


def _valid_keys_hint(dotted: str) -> str:
    model: type[BaseModel] = Config
    for part in dotted.split(".")[:-1]:
        field = model.model_fields.get(part)
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            break
        model = field.annotation
    return f" (valid here: {', '.join(model.model_fields)})"


def _read_file(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {p} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"config file {p} must hold a mapping of sections, got {type(loaded).__name__}")
    return loaded or {}


def _merge(tree: dict, layer: dict, origin: str, origins: dict[str, str], prefix: str = "") -> None:
    """Lay ``layer`` over ``tree`` key by key (sections recursively), noting each leaf's origin."""
    for key, value in layer.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and isinstance(tree.get(key), dict):
            _merge(tree[key], value, origin, origins, dotted + ".")
        else:
            tree[key] = value
            for leaf in (_leaves(value) if isinstance(value, dict) and value else [""]):
                origins[dotted + (f".{leaf}" if leaf else "")] = origin


def resolve_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (),
                   planned: list[str] | tuple[str, ...] = ()) -> tuple[Config, dict[str, str]]:
    """One rule, key by key: built-in default (``Config()``) -> config file -> ``--set``;
    ``--set a.b=v`` changes a.b and nothing else. The one exception: the default run's
    data settings (its long tail) belong to the embedded set, so a file or ``--set``
    naming another ``data.source`` starts the data section from the section defaults.
    ``planned`` (``key=value`` texts, :mod:`genaug.plan`) are laid on last, each only
    where neither the file nor ``--set`` names its key. Returns the config and
    ``{dotted key: "file" | "--set" | "plan"}`` for every key set."""
    tree: dict = Config().model_dump(mode="json")
    default_source, origins = tree["data"]["source"], {}
    layers = [(_read_file(path), "file")] if path is not None else []
    setters: dict = {}
    for text in overrides:
        keys, value = parse_override(text)
        _set_nested(setters, keys, value, ".".join(keys))
    layers.append((setters, "--set"))
    for layer, origin in layers:
        source = (layer.get("data") or {}).get("source") if isinstance(layer.get("data"), dict) else None
        if source is not None and source != default_source and tree["data"]["source"] == default_source:
            tree["data"] = DataConfig().model_dump(mode="json")
        _merge(tree, layer, origin, origins)
    plan_layer: dict = {}
    for text in planned:
        keys, value = parse_override(text)
        if ".".join(keys) not in origins:
            _set_nested(plan_layer, keys, value, ".".join(keys))
    _merge(tree, plan_layer, "plan", origins)
    bad = unknown_keys(Config, tree)
    if bad:
        raise ConfigError("unknown config key " + ", ".join(f"'{k}'" for k in bad) + _valid_keys_hint(bad[0]))
    try:
        return Config.model_validate(tree), origins
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from None


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """A :class:`Config` from an optional YAML file plus ``key=value`` overrides
    (see :func:`resolve_config` for the rule)."""
    return resolve_config(path, overrides)[0]


def annotated_yaml(cfg: Config, origins: dict[str, str]) -> str:
    """The resolved config as YAML, each value that differs from the built-in default
    followed by a comment naming where it came from (``# file`` / ``# --set``)."""
    default = Config().model_dump(mode="json")
    lines: list[str] = []

    def emit(tree: dict, base: dict, prefix: str, indent: str) -> None:
        for key, value in tree.items():
            dotted, ref = f"{prefix}{key}", (base or {}).get(key)
            if not prefix and isinstance(value, dict):  # a section
                lines.append(f"{indent}{key}:")
                emit(value, ref, dotted + ".", indent + "  ")
                continue
            text = yaml.safe_dump({key: value}, default_flow_style=True, sort_keys=False, width=10**6).strip()[1:-1]
            note = f"  # {origins.get(dotted, 'section default: another data.source')}" if value != ref else ""
            lines.append(f"{indent}{text}{note}")

    emit(cfg.model_dump(mode="json"), default, "", "")
    return "\n".join(lines) + "\n"
