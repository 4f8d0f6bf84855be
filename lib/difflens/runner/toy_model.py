"""Command line of the toy models: ``python -m difflens.runner.toy_model <command>``.

``train --preset control-stage1|control-stage2|control-stage3|control|denoiser`` (``make
toy-model`` runs all five, in this order) trains a toy U-Net
with :func:`difflens.models.toy_training.train`, checkpointing every ``checkpoint_every``
steps into the work folder (default ``$DIFFLENS_CACHE/toy-model-training/<preset>``) and
resuming from the checkpoint when one exists (``--fresh`` starts again; ``--max-steps``
pauses early). When every step is done it exports the model: the pipeline folder
(``unet/``, ``scheduler/``, ``text_encoder/``, ``tokenizer/``, ``model_index.json``) with
safetensors weights, the training log, the loss curve, a grid of DDIM samples and the model
card, written to ``lib/difflens/assets/toy-model`` (control) or ``.../toy-denoiser``
(denoiser), or ``--out``, and swapped in whole.

``classifier`` trains the shape classifier that labels generated samples
(:mod:`difflens.models.shape_classifier`); ``check-samples`` draws class-prompted samples
of a model and reports how many the classifier recognises; ``probe`` measures a training
checkpoint's class separation on validation scenes (to follow a run); ``search`` runs the
validation search of the controls' layer and timestep for a model and writes it next to
the model (``validation_search.csv``).

The ``train`` options override the preset's fields of
:class:`~difflens.models.toy_training.ToyTrainConfig`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from dataclasses import asdict, replace
from pathlib import Path

from difflens.data.toy import TOY_CLASSES
from difflens.models.toy import MAX_WEIGHTS_MB, TOY_MODELS, TOY_VERSION, assets_path
from difflens.models.toy_training import (
    PRESETS,
    TextSide,
    ToyTrainConfig,
    TrainResult,
    default_work_dir,
    folder_megabytes,
    model_card,
    sample,
    train,
)
from difflens.viz.training import plot_loss_curve, save_sample_grid

PRESET_MODELS = {"control": "toy", "denoiser": "toy-denoiser"}
"""Training preset -> the built-in model name it produces (``control-stage1``,
``control-stage2`` and ``control-stage3`` are earlier stages of ``control`` and are not exported)."""


def train_command(preset: str) -> str:
    """The command line that trains a preset's committed model.

    Args:
        preset: ``"control"`` or ``"denoiser"``.

    Returns:
        The shell command.
    """
    return f"python -m difflens.runner.toy_model train --preset {preset}"


def _write_pipeline(result: TrainResult, tmp: Path) -> None:
    """The diffusers / transformers parts and ``model_index.json`` of a model folder."""
    import diffusers

    result.unet.save_pretrained(tmp / "unet", safe_serialization=True)
    result.text_encoder.save_pretrained(tmp / "text_encoder", safe_serialization=True)
    result.scheduler.save_pretrained(tmp / "scheduler")
    result.tokenizer.save_pretrained(tmp / "tokenizer")
    index = {
        "_class_name": "DifflensToyModel",
        "_diffusers_version": diffusers.__version__,
        "difflens": TOY_VERSION,
        "unet": ["diffusers", "UNet2DConditionModel"],
        "scheduler": ["diffusers", "DDPMScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "vae": [None, None],
    }
    (tmp / "model_index.json").write_text(json.dumps(index, indent=2))


def export(
    result: TrainResult,
    out_dir: Path | None = None,
    samples: bool = True,
    command: str | None = None,
) -> Path:
    """Write the pipeline folder, model card, loss curve and samples; replace ``out_dir``.

    Everything is written to a temporary sibling folder that replaces ``out_dir`` at the
    end, so a failed export leaves the previous model in place.

    Args:
        result: the finished training run.
        out_dir: the model folder (default: the package's folder of the run's kind).
        samples: also draw 24 DDIM samples (8 unconditional, 2 per class) into
            ``samples.png``.
        command: the command line that trains the model (for the card).

    Returns:
        The model folder.

    Raises:
        RuntimeError: the weights are larger than ``MAX_WEIGHTS_MB``.
    """
    import diffusers
    import transformers

    preset = "control" if result.config.has_heads else "denoiser"
    out_dir = (
        Path(out_dir) if out_dir is not None else assets_path(TOY_MODELS[PRESET_MODELS[preset]])
    )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f"{out_dir.name}.partial-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    _write_pipeline(result, tmp)
    log = {"config": asdict(result.config), **result.log}
    (tmp / "training_log.json").write_text(json.dumps(log, indent=1))
    plot_loss_curve(result.log, tmp / "loss_curve.png")
    if samples:
        prompts = [""] * 8 + [name for name in TOY_CLASSES for _ in range(2)]
        text = TextSide(result.tokenizer, result.text_encoder)
        images = sample(result.unet, dict(result.scheduler.config), text, prompts)
        save_sample_grid(images, prompts, tmp / "samples.png")
    megabytes = folder_megabytes(tmp)
    if megabytes > MAX_WEIGHTS_MB:
        raise RuntimeError(f"toy model weights are {megabytes:.1f} MB, over {MAX_WEIGHTS_MB} MB")
    card = model_card(
        result,
        megabytes,
        diffusers.__version__,
        transformers.__version__,
        samples,
        command or train_command(preset),
    )
    (tmp / "MODEL_CARD.md").write_text(card)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    tmp.rename(out_dir)
    return out_dir


OVERRIDES: dict[str, tuple[str, type, str | None]] = {
    "steps": ("--steps", int, None),
    "batch_size": ("--batch-size", int, None),
    "learning_rate": ("--lr", float, None),
    "warmup_steps": ("--warmup-steps", int, None),
    "uncond_prob": ("--uncond-prob", float, None),
    "snr_gamma": ("--snr-gamma", float, None),
    "timestep_sampling": ("--timestep-sampling", str, None),
    "max_timestep": ("--max-timestep", int, None),
    "image_size": ("--image-size", int, None),
    "render_sizes": ("--render-sizes", int, "+"),
    "n_objects": ("--n-objects", int, 2),
    "single_class_fraction": ("--single-class-fraction", float, None),
    "channels": ("--channels", int, "+"),
    "layers_per_block": ("--layers-per-block", int, "+"),
    "attention": ("--attention", int, "+"),
    "class_heads": ("--class-heads", str, "*"),
    "part_heads": ("--part-heads", str, "*"),
    "aux_weight": ("--aux-weight", float, None),
    "head_kind": ("--head-kind", str, None),
    "head_temperature": ("--head-temperature", float, None),
    "aux_uncond_only": ("--aux-uncond-only", int, None),
    "init_from": ("--init-from", str, None),
    "first_scene": ("--first-scene", int, None),
    "train_text_encoder": ("--train-text-encoder", int, None),
    "bf16": ("--bf16", int, None),
    "seed": ("--seed", int, None),
    "checkpoint_every": ("--checkpoint-every", int, None),
}
"""Config field -> (option, type, nargs) of the ``train`` options that override a preset."""


def _train_parser(sub: argparse._SubParsersAction) -> None:
    """The ``train`` command's options."""
    p = sub.add_parser("train", help="train (or resume) and write the model folder")
    p.add_argument("--preset", choices=sorted(PRESETS), default="control")
    for name, (option, kind, nargs) in OVERRIDES.items():
        p.add_argument(option, dest=name, type=kind, nargs=nargs, default=None)
    p.add_argument("--threads", type=int, default=1, help="torch threads (the models used one)")
    p.add_argument("--work-dir", type=Path, default=None, help="checkpoint folder (default: cache)")
    p.add_argument("--out", type=Path, default=None, help="model folder (default: package assets)")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    p.add_argument("--max-steps", type=int, default=None, help="stop early; resume later")
    p.add_argument("--no-samples", action="store_true")
    p.add_argument("--no-export", action="store_true", help="train only (a trial run)")


def build_parser() -> argparse.ArgumentParser:
    """The command line: ``train``, ``classifier``, ``check-samples``, ``probe`` and ``search``.

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        prog="python -m difflens.runner.toy_model", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    c = sub.add_parser("classifier", help="train the shape classifier and write its folder")
    c.add_argument("--out", type=Path, default=None)
    c.add_argument("--threads", type=int, default=1)
    s = sub.add_parser("check-samples", help="classify class-prompted samples of a model")
    s.add_argument("--model", default="toy")
    s.add_argument("--per-class", type=int, default=64)
    s.add_argument("--steps", type=int, default=50)
    s.add_argument("--guidance", type=float, default=1.0)
    s.add_argument("--threads", type=int, default=1)
    s.add_argument("--out", type=Path, default=None, help="JSON file (default: the model folder)")
    pr = sub.add_parser("probe", help="class separation of a checkpoint on validation scenes")
    pr.add_argument("--work-dir", type=Path, required=True)
    pr.add_argument("--n-images", type=int, default=60)
    pr.add_argument("--layers", nargs="+", default=["down2.attn1", "mid", "up1.attn2", "up2.res1"])
    pr.add_argument("--timesteps", type=int, nargs="+", default=[50, 200, 500, 800])
    pr.add_argument("--threads", type=int, default=1)
    se = sub.add_parser("search", help="validation search of the layer and timestep of a model")
    se.add_argument("--model", default="toy")
    se.add_argument("--n-images", type=int, default=80)
    se.add_argument("--threads", type=int, default=1)
    se.add_argument("--out", type=Path, default=None, help="CSV file (default: the model folder)")
    return parser


def config_from_args(args: argparse.Namespace) -> ToyTrainConfig:
    """The training configuration that parsed ``train`` options describe.

    Args:
        args: from :func:`build_parser`'s ``parse_args``.

    Returns:
        The preset's config with every given option replacing its field; ``--snr-gamma
        0`` (or a negative value) switches Min-SNR weighting off.
    """
    changes = {}
    for name in OVERRIDES:
        value = getattr(args, name)
        if value is None:
            continue
        if isinstance(value, list):
            value = tuple(bool(v) for v in value) if name == "attention" else tuple(value)
        elif name in ("train_text_encoder", "bf16", "aux_uncond_only"):
            value = bool(value)
        changes[name] = value
    if "snr_gamma" in changes and changes["snr_gamma"] <= 0:
        changes["snr_gamma"] = None
    return replace(PRESETS[args.preset], **changes)


def _train(args: argparse.Namespace) -> int:
    """The ``train`` command."""
    config = config_from_args(args)
    work_dir = args.work_dir or default_work_dir(args.preset)
    result = train(config, work_dir, args.threads, args.fresh, args.max_steps)
    if len(result.log["loss"]) < config.steps:
        print(f"stopped at step {len(result.log['loss'])} of {config.steps}; run again to resume")
        return 0
    if args.no_export or args.preset not in PRESET_MODELS:
        return 0  # a trial, or an earlier stage of a committed model
    out = export(result, args.out, samples=not args.no_samples)
    print(f"wrote {out} ({folder_megabytes(out):.1f} MB of weights)")
    return 0


def _classifier(args: argparse.Namespace) -> int:
    """The ``classifier`` command: train, measure on test renders, write the folder."""
    import torch

    from difflens.models.shape_classifier import save_classifier, train_classifier

    torch.set_num_threads(args.threads)
    model, report = train_classifier()
    folder = save_classifier(model, report, args.out)
    print(f"wrote {folder}: held-out accuracy {report['test_accuracy']:.3f}")
    return 0


def sample_check(
    model: str = "toy",
    per_class: int = 64,
    steps: int = 50,
    guidance: float = 1.0,
    seed: int = 0,
    bf16: bool = True,
) -> dict:
    """Draw ``per_class`` DDIM samples per class prompt and let the shape classifier label them.

    Args:
        model: a built-in toy model name or a model folder.
        per_class: samples per class.
        steps: DDIM steps.
        guidance: classifier-free guidance scale (1: none).
        seed: seed of the initial noise.
        bf16: sample under bfloat16 autocast (as the models were trained).

    Returns:
        :func:`difflens.models.shape_classifier.check_samples`'s report plus ``model``,
        ``steps``, ``guidance``, ``per_class``, ``seed``, ``bf16`` and ``wall_seconds``.
    """
    import time

    from difflens.models.backbone import load_backbone
    from difflens.models.shape_classifier import check_samples

    clock = time.perf_counter()
    backbone = load_backbone(model)
    text = TextSide(backbone.tokenizer, backbone.text_encoder)
    prompts = [name for name in TOY_CLASSES for _ in range(per_class)]
    config = dict(backbone.scheduler.config)
    images = sample(backbone.unet, config, text, prompts, steps, seed, guidance, bf16=bf16)
    report = check_samples(images, prompts)
    report.update(model=model, steps=steps, guidance=guidance, per_class=per_class, seed=seed)
    report["bf16"] = bf16
    report["wall_seconds"] = time.perf_counter() - clock
    return report


def _check_samples(args: argparse.Namespace) -> int:
    """The ``check-samples`` command: write the report next to the model (or to ``--out``)."""
    import torch

    from difflens.models.toy import toy_model_path

    torch.set_num_threads(args.threads)
    report = sample_check(args.model, args.per_class, args.steps, args.guidance)
    out = args.out
    if out is None:
        folder = toy_model_path(args.model) if args.model in TOY_MODELS else Path(args.model)
        out = folder / f"sample_check_guidance{args.guidance:g}.json"
    Path(out).write_text(json.dumps(report, indent=1))
    print(f"{args.model}: {report['accuracy']:.3f} of the samples recognised ({out})")
    return 0


def probe_checkpoint(
    work_dir: Path,
    n_images: int = 60,
    layers: tuple[str, ...] = ("down2.attn1", "mid", "up1.attn2", "up2.res1"),
    timesteps: tuple[int, ...] = (50, 200, 500, 800),
) -> dict:
    """Class separation of a training checkpoint against random weights, on validation scenes.

    Args:
        work_dir: the training folder holding ``checkpoint.pt``.
        n_images: validation scenes (from the validation split's first seed).
        layers: the layers to measure.
        timesteps: the timesteps to measure.

    Returns:
        ``{"step", "rows"}``: the checkpoint's step and one record per layer and timestep
        (:func:`difflens.analysis.controls.layer_timestep_search`'s columns).
    """
    from difflens.analysis.controls import layer_timestep_search
    from difflens.models.layers import LayerRegistry
    from difflens.models.toy_training import backbone_from_checkpoint

    backbone = backbone_from_checkpoint(work_dir)
    registry = LayerRegistry(backbone.base_unet, backbone.latent_scale)
    present = [name for name in layers if name in registry]
    if len(present) < len(layers):
        print(f"probe: {sorted(set(layers) - set(present))} not in {backbone.model_id}; skipped")
    ranking = layer_timestep_search(
        backbone,
        n_images=n_images,
        layers=present,
        timesteps=list(timesteps),
        image_size=int(backbone.base_unet.config.sample_size),
        progress=False,
    )
    step = int(backbone.model_id.rsplit(" ", 1)[-1])
    return {"step": step, "rows": ranking.to_dict("records")}


def _probe(args: argparse.Namespace) -> int:
    """The ``probe`` command: print the table and append it to ``probe.jsonl``."""
    import torch

    torch.set_num_threads(args.threads)
    result = probe_checkpoint(
        args.work_dir, args.n_images, tuple(args.layers), tuple(args.timesteps)
    )
    with open(Path(args.work_dir) / "probe.jsonl", "a") as handle:
        handle.write(json.dumps(result) + "\n")
    import pandas as pd

    print(f"step {result['step']}")
    print(pd.DataFrame(result["rows"]).round(3).to_string())
    return 0


def _search(args: argparse.Namespace) -> int:
    """The ``search`` command: the validation search of a model, written next to it."""
    import torch

    from difflens.analysis.controls import layer_timestep_search
    from difflens.models.backbone import load_backbone
    from difflens.models.toy import toy_model_path

    torch.set_num_threads(args.threads)
    backbone = load_backbone(args.model)
    size = int(backbone.base_unet.config.sample_size)
    ranking = layer_timestep_search(
        backbone, n_images=args.n_images, image_size=size, progress=False
    )
    folder = toy_model_path(args.model) if args.model in TOY_MODELS else Path(args.model)
    out = args.out or folder / "validation_search.csv"
    ranking.to_csv(out, index=False)
    print(ranking.head(15).round(3).to_string())
    return 0


COMMANDS = {
    "train": _train,
    "classifier": _classifier,
    "check-samples": _check_samples,
    "probe": _probe,
    "search": _search,
}
"""Command name -> its function."""


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: the arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 when the command finished (a paused training run too: run it
        again to resume).
    """
    args = build_parser().parse_args(argv)
    return COMMANDS[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
