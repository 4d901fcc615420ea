"""Text-to-image variations of real images (``sample.generator: img2img``, SPEC §3).

A Stable-Diffusion-style diffusers img2img pipeline (``img2img.model``: a local
``save_pretrained`` folder, or a hub id when online) turns each real training image into
variants with a class-name prompt (DA-Fusion, Trabucco et al. 2023): image ``i`` of class
``c`` starts from the class's real image ``i mod n_c`` at strength
``strengths[(i div n_c) mod len(strengths)]``, with its own seed, so every variant's
source image, strength, prompt and seed are known (and written to the manifest). The
output is converted and resized by the same function as real data.

:func:`build_tiny_pipeline` writes a tiny pipeline built from configs (the real diffusers
and transformers classes at toy sizes, a tokenizer from a small local vocabulary), as
diffusers' own tests do: for offline tests and for trying the plumbing with no download.
"""

from __future__ import annotations

import hashlib
import json
import math
import string
from pathlib import Path

import numpy as np
import torch

from genaug.config import Config
from genaug.errors import GenaugError


def _quiet() -> None:
    from diffusers.utils import logging as dlog

    dlog.disable_progress_bar()
    dlog.set_verbosity_error()
    try:
        from transformers.utils import logging as tlog

        tlog.disable_progress_bar()
        tlog.set_verbosity_error()
    except ImportError:
        pass


def load_pipeline(spec: str, scheduler: str = "pipeline"):
    """The img2img pipeline of ``spec`` (folder or hub id), on the accelerate device;
    every failure is one line saying what to do."""
    try:
        from diffusers import StableDiffusionImg2ImgPipeline
        import transformers  # noqa: F401  (the text encoder and tokenizer)
    except ImportError as exc:
        raise GenaugError(f"sample.generator=img2img needs transformers: pip install -e '.[t2i]' ({exc})") from None
    _quiet()
    path = Path(spec).expanduser()
    if path.exists() and not (path / "model_index.json").is_file():
        raise GenaugError(f"img2img.model={spec}: not a diffusers pipeline folder (no model_index.json; save one "
                          "with pipeline.save_pretrained(DIR))")
    try:
        pipe = StableDiffusionImg2ImgPipeline.from_pretrained(str(path) if path.exists() else spec, safety_checker=None,
                                                              requires_safety_checker=False)
    except (OSError, ValueError, EnvironmentError, TypeError) as exc:
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        if path.exists():
            raise GenaugError(f"img2img.model={spec}: not a loadable img2img pipeline ({first})") from None
        raise GenaugError(f"img2img.model={spec}: cannot load it from the Hugging Face hub ({first}); offline, "
                          f"download it where there is a network (huggingface-cli download {spec} --local-dir DIR), "
                          "copy DIR here and set img2img.model=DIR") from None
    if scheduler != "pipeline":
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

        cls = {"ddim": DDIMScheduler, "dpm++": DPMSolverMultistepScheduler}[scheduler]
        pipe.scheduler = cls.from_config(pipe.scheduler.config)
    from accelerate import PartialState

    pipe.set_progress_bar_config(disable=True)
    return pipe.to(PartialState().device)


def pipeline_sha(spec: str) -> str:
    """Hash of a local pipeline's weight files (the hub id itself for a hub pipeline)."""
    path = Path(spec).expanduser()
    h = hashlib.sha256()
    if not path.exists():
        h.update(spec.encode())
    for f in sorted(path.rglob("*.safetensors")) if path.exists() else []:
        h.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


class VariantPlan:
    """Which real image, strength and prompt image ``index`` of a class starts from."""

    def __init__(self, cfg: Config, data):
        ic = cfg.img2img
        train = data.splits["train"]
        self.classes, self.strengths = data.classes, tuple(ic.strengths)
        self.by_class = [np.flatnonzero(train.labels == c) for c in range(data.num_classes)]
        self.images, self.ids = train.images, train.ids
        unknown = sorted(set(ic.prompts) - set(data.classes))
        if unknown:
            raise GenaugError(f"img2img.prompts names classes the data does not have: {unknown}")
        self.prompts = [ic.prompts.get(name, ic.prompt).format(name=name) for name in data.classes]

    def __call__(self, label: int, index: int) -> dict:
        pool = self.by_class[label]
        source = int(pool[index % len(pool)])
        return {"source_id": self.ids[source], "strength": self.strengths[(index // len(pool)) % len(self.strengths)],
                "prompt": self.prompts[label], "source_index": source}


def open_img2img(cfg: Config):
    """The ``img2img`` kind as an :class:`~genaug.synthetic.generators.OpenedGenerator`."""
    from genaug.data import load_data
    from genaug.data.images import to_array
    from genaug.synthetic.generators import OpenedGenerator

    ic = cfg.img2img
    if not ic.model:
        raise GenaugError("sample.generator=img2img needs img2img.model: a diffusers img2img pipeline folder or hub id")
    if int(ic.steps * min(ic.strengths)) < 1:  # diffusers runs int(steps * strength) denoising steps
        raise GenaugError(f"img2img.steps={ic.steps} at strength {min(ic.strengths):g} leaves no denoising step; "
                          f"raise img2img.steps to at least {math.ceil(1 / min(ic.strengths))}")
    data = load_data(cfg.data)
    plan = VariantPlan(cfg, data)
    pipe = load_pipeline(ic.model, ic.scheduler)
    size = ic.resolution or pipe.unet.config.sample_size * pipe.vae_scale_factor

    def draw(labels: torch.Tensor, seeds: list[int], plans: list[dict]) -> torch.Tensor:
        """uint8 (N, C, H, W): variant i from its plan's source image, strength and prompt, seed ``seeds[i]``."""
        from PIL import Image

        out: list[np.ndarray | None] = [None] * len(seeds)
        for strength in sorted({p["strength"] for p in plans}):  # the pipeline takes one strength per call
            which = [i for i, p in enumerate(plans) if p["strength"] == strength]
            for start in range(0, len(which), ic.batch_size):
                chunk = which[start : start + ic.batch_size]
                sources = [_to_pil(plan.images[plans[i]["source_index"]]).resize((size, size), Image.LANCZOS)
                           for i in chunk]
                result = pipe(prompt=[plans[i]["prompt"] for i in chunk], image=sources, strength=strength,
                              num_inference_steps=ic.steps, guidance_scale=ic.guidance_scale,
                              negative_prompt=[ic.negative_prompt] * len(chunk) if ic.negative_prompt else None,
                              generator=[torch.Generator().manual_seed(int(seeds[i])) for i in chunk], output_type="pil")
                for i, img in zip(chunk, result.images):
                    out[i] = to_array(img, channels=data.channels, size=data.image_size)
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()

    settings = {"kind": "img2img", "model": ic.model, "strengths": list(ic.strengths), "guidance_scale": ic.guidance_scale,
                "steps": ic.steps, "scheduler": type(pipe.scheduler).__name__, "resolution": size,
                "negative_prompt": ic.negative_prompt}
    return OpenedGenerator(kind="img2img", path=Path(ic.model), step=0, classes=data.classes, settings=settings,
                           weights_sha=pipeline_sha(ic.model), meta={"kind": "img2img", "classes": data.classes},
                           draw=draw, plan=plan)


def _to_pil(image: np.ndarray):
    """uint8 (H, W, C) -> an RGB PIL image (the pipeline's VAE takes 3 channels)."""
    from genaug.data.images import array_to_pil

    return array_to_pil(image).convert("RGB")


def build_tiny_pipeline(out_dir: str | Path, *, seed: int = 0) -> Path:
    """A tiny Stable-Diffusion img2img pipeline built from configs (UNet2DConditionModel,
    AutoencoderKL, CLIPTextModel, a CLIP tokenizer over a character vocabulary, DDIM),
    saved with ``save_pretrained``: real components, toy sizes, random weights."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionImg2ImgPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in string.ascii_lowercase + string.digits + ".,'-/!?&()":  # every character alone, and word-final
        vocab[ch] = len(vocab)
        vocab[ch + "</w>"] = len(vocab)
    (out / "vocab.json").write_text(json.dumps(vocab))
    (out / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(out / "vocab.json"), str(out / "merges.txt"), pad_token="<|endoftext|>",
                              model_max_length=77)
    torch.manual_seed(seed)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=37,
                                        num_attention_heads=4, num_hidden_layers=2, max_position_embeddings=77,
                                        bos_token_id=0, eos_token_id=1, pad_token_id=1, projection_dim=32))
    unet = UNet2DConditionModel(block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32)
    vae = AutoencoderKL(block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4, sample_size=32,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2)
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionImg2ImgPipeline(vae=vae, text_encoder=text, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
                                          safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(out))
    for name in ("vocab.json", "merges.txt"):
        (out / name).unlink()  # the tokenizer folder has its own copies
    return out
