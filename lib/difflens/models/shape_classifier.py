"""A small CNN that tells the toy shapes apart: a check of samples without the model's features.

The classifier is trained on toy-world RENDERS only (never on model samples): scenes of the
``train`` split whose objects all share one class (1-4 objects, the class is the label),
rendered at 64 or 128 px and resized to 64 px as the toy models see them, with a little
pixel noise added so that it does not hinge on perfectly clean edges. It is evaluated on
renders of the held-out ``test`` split (:func:`render_set`), then labels a model's
class-prompted samples (:func:`check_samples`): the share recognised as the prompted class
says whether the model draws what the prompt asks (chance: 1/8).

Seeds: training renders from train offset :data:`CLASSIFIER_TRAIN_OFFSET` on (far past
the scenes the toy U-Nets were trained on), test renders from test offset
:data:`CLASSIFIER_TEST_OFFSET` on.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from difflens.data.images import images_to_tensor
from difflens.data.toy import TOY_CLASSES, make_toy_scene
from difflens.models.toy import SHAPE_CLASSIFIER_FOLDER, TOY_IMAGE_SIZE, assets_path

CLASSIFIER_TRAIN_OFFSET = 50_000_000
"""First train-split seed offset of the classifier's training renders."""
CLASSIFIER_TEST_OFFSET = 400_000
"""First test-split seed offset of the classifier's held-out renders."""


@dataclass(frozen=True)
class ClassifierConfig:
    """How the shape classifier is trained.

    Attributes:
        n_train: training renders (each used ``epochs`` times).
        n_test: held-out test renders.
        epochs: passes over the training renders.
        batch_size: renders per step.
        learning_rate: AdamW's learning rate (cosine decay to 0).
        noise: largest standard deviation of the Gaussian pixel noise added in training
            (drawn uniformly from 0 per image, in units of the [-1, 1] range).
        width: channels of the first convolution (doubled twice).
        seed: seed of the weights and the draws.
    """

    n_train: int = 12_000
    n_test: int = 2_000
    epochs: int = 6
    batch_size: int = 64
    learning_rate: float = 2e-3
    noise: float = 0.15
    width: int = 32
    seed: int = 0


class ShapeClassifier(torch.nn.Module):
    """Four 3 x 3 convolution stages (BatchNorm, ReLU, 2 x 2 max pooling), global mean, linear.

    Args:
        width: channels of the first stage (then 2x, 4x, 4x).
        n_classes: outputs (the toy classes).
    """

    def __init__(self, width: int = 32, n_classes: int = len(TOY_CLASSES)):
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 4 * width]
        layers = []
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            layers += [
                torch.nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                torch.nn.BatchNorm2d(c_out),
                torch.nn.ReLU(inplace=True),
                torch.nn.MaxPool2d(2),
            ]
        self.features = torch.nn.Sequential(*layers)
        self.head = torch.nn.Linear(chans[-1], n_classes)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Class logits.

        Args:
            pixels: ``(B, 3, 64, 64)`` float32 images in [-1, 1].

        Returns:
            ``(B, n_classes)`` logits, in the order of ``TOY_CLASSES``.
        """
        return self.head(self.features(pixels).mean(dim=(2, 3)))


def render_set(
    n: int, split: str, offset: int, image_size: int = TOY_IMAGE_SIZE
) -> tuple[torch.Tensor, np.ndarray]:
    """One-class toy renders with their class labels.

    Render ``i`` is toy scene ``offset + i`` of ``split`` drawn from the class
    ``TOY_CLASSES[i % 8]`` only (balanced classes), at 64 px for even and 128 px for odd
    ``i // 8``, resized to ``image_size``.

    Args:
        n: the number of renders.
        split: the toy split.
        offset: the first seed offset in the split.
        image_size: the output side in pixels.

    Returns:
        ``(n, 3, S, S)`` float32 pixels in [-1, 1] and ``(n,)`` int64 class indices.
    """
    images, labels = [], []
    for i in range(n):
        k = i % len(TOY_CLASSES)
        size = 64 if (i // len(TOY_CLASSES)) % 2 == 0 else 128
        scene = make_toy_scene(offset + i, size, classes=(TOY_CLASSES[k],), split=split)
        images.append(scene.image)
        labels.append(k)
    return images_to_tensor(images, image_size), np.asarray(labels, dtype=np.int64)


def _epoch(model, optimizer, schedule, pixels, labels, config, gen) -> float:
    """One pass over the training renders in a seeded order, with pixel noise; mean loss."""
    model.train()
    order = torch.randperm(len(pixels), generator=gen)
    losses = []
    for start in range(0, len(order), config.batch_size):
        idx = order[start : start + config.batch_size]
        x = pixels[idx]
        sigma = torch.rand(len(idx), 1, 1, 1, generator=gen) * config.noise
        x = x + sigma * torch.randn(x.shape, generator=gen)
        loss = F.cross_entropy(model(x), torch.as_tensor(labels[idx.numpy()]))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    return float(np.mean(losses))


@torch.no_grad()
def predict(model: ShapeClassifier, pixels: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """Predicted class indices.

    Args:
        model: the classifier.
        pixels: ``(N, 3, 64, 64)`` images in [-1, 1].
        batch_size: images per forward pass.

    Returns:
        ``(N,)`` int64 indices into ``TOY_CLASSES``.
    """
    model.eval()
    out = [model(pixels[i : i + batch_size]).argmax(1) for i in range(0, len(pixels), batch_size)]
    return torch.cat(out).numpy().astype(np.int64)


def train_classifier(config: ClassifierConfig = ClassifierConfig()) -> tuple[ShapeClassifier, dict]:
    """Train the classifier on train-split renders and measure it on test-split renders.

    Args:
        config: the recipe.

    Returns:
        ``(model, report)``: the trained classifier (eval mode) and a JSON-ready report
        with the config, per-epoch losses, the test accuracy (overall and per class), the
        wall time and the seed ranges.
    """
    torch.manual_seed(config.seed)
    clock, cpu = time.perf_counter(), time.process_time()
    pixels, labels = render_set(config.n_train, "train", CLASSIFIER_TRAIN_OFFSET)
    test_pixels, test_labels = render_set(config.n_test, "test", CLASSIFIER_TEST_OFFSET)
    model = ShapeClassifier(config.width)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate)
    steps = config.epochs * -(-config.n_train // config.batch_size)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    gen = torch.Generator().manual_seed(config.seed)
    losses = [
        _epoch(model, optimizer, schedule, pixels, labels, config, gen)
        for _ in range(config.epochs)
    ]
    predicted = predict(model, test_pixels)
    report = {
        "config": asdict(config),
        "epoch_losses": losses,
        "test_accuracy": float(np.mean(predicted == test_labels)),
        "test_accuracy_per_class": per_class_accuracy(predicted, test_labels),
        "train_offsets": [CLASSIFIER_TRAIN_OFFSET, CLASSIFIER_TRAIN_OFFSET + config.n_train - 1],
        "test_offsets": [CLASSIFIER_TEST_OFFSET, CLASSIFIER_TEST_OFFSET + config.n_test - 1],
        "wall_seconds": time.perf_counter() - clock,
        "cpu_seconds": time.process_time() - cpu,
        "threads": torch.get_num_threads(),
    }
    return model.eval(), report


def per_class_accuracy(predicted: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """The share of correct predictions within each true class.

    Args:
        predicted: ``(N,)`` predicted class indices.
        labels: ``(N,)`` true class indices.

    Returns:
        ``{class name: accuracy}`` for the classes present in ``labels``.
    """
    return {
        TOY_CLASSES[k]: float(np.mean(predicted[labels == k] == k)) for k in sorted(set(labels))
    }


def save_classifier(model: ShapeClassifier, report: dict, folder: Path | None = None) -> Path:
    """Write the weights (safetensors), the report and a short card.

    Args:
        model: the trained classifier.
        report: from :func:`train_classifier`.
        folder: where to write (default: the package's ``assets/toy-shape-classifier``).

    Returns:
        The folder.
    """
    from safetensors.torch import save_file

    folder = Path(folder) if folder is not None else assets_path(SHAPE_CLASSIFIER_FOLDER)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), str(folder / "model.safetensors"))
    (folder / "report.json").write_text(json.dumps(report, indent=1))
    (folder / "MODEL_CARD.md").write_text(classifier_card(report))
    return folder


def load_classifier(folder: Path | None = None) -> ShapeClassifier:
    """The committed (or a saved) shape classifier, in eval mode.

    Args:
        folder: the folder :func:`save_classifier` wrote (default: the package's).

    Returns:
        The classifier.

    Raises:
        FileNotFoundError: no weights in the folder, with the command that trains them.
    """
    from safetensors.torch import load_file

    folder = Path(folder) if folder is not None else assets_path(SHAPE_CLASSIFIER_FOLDER)
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise FileNotFoundError(
            f"no shape classifier at {weights}; train it with "
            "`python -m difflens.runner.toy_model classifier`"
        )
    report = json.loads((folder / "report.json").read_text())
    model = ShapeClassifier(int(report["config"]["width"]))
    model.load_state_dict(load_file(str(weights)))
    return model.eval()


def classifier_card(report: dict) -> str:
    """The Markdown card of a trained classifier, every number from its report.

    Args:
        report: from :func:`train_classifier`.

    Returns:
        The card's text, ending in a newline.
    """
    config = report["config"]
    per_class = ", ".join(f"{k} {v:.3f}" for k, v in report["test_accuracy_per_class"].items())
    lines = [
        "# Toy shape classifier",
        "",
        "A small CNN (four 3 x 3 convolution stages with BatchNorm, ReLU and max pooling, global",
        "mean, linear) that labels toy images with their shape class. It checks the toy models'",
        "class-prompted samples without using the models' own features.",
        "",
        f"- Training data: {config['n_train']:,} toy-world renders of the `train` split (seed"
        f" offsets {report['train_offsets'][0]:,} .. {report['train_offsets'][1]:,}), every object"
        " of a render of one class (the label), classes balanced, rendered at 64 or 128 px and"
        f" resized to 64 px; Gaussian pixel noise (sd uniform in 0 .. {config['noise']:g}) added."
        " Never trained on model samples.",
        f"- {config['epochs']} epochs, batch {config['batch_size']}, AdamW lr"
        f" {config['learning_rate']:g} with cosine decay, seed {config['seed']}; wall time"
        f" {report['wall_seconds'] / 60:.1f} min (rendering included) with {report['threads']}"
        " CPU thread(s) of a shared 2-core machine.",
        f"- Held-out accuracy on {config['n_test']:,} renders of the `test` split (seed offsets"
        f" {report['test_offsets'][0]:,} .. {report['test_offsets'][1]:,}):"
        f" {report['test_accuracy']:.3f} (chance 0.125); per class: {per_class}.",
        "- Reproduce: `python -m difflens.runner.toy_model classifier`.",
    ]
    return "\n".join(lines) + "\n"


def check_samples(
    images: np.ndarray, prompted: list[str], model: ShapeClassifier | None = None
) -> dict:
    """How many class-prompted samples the classifier recognises as the prompted class.

    Args:
        images: ``(N, H, W, 3)`` uint8 samples.
        prompted: the class name each sample was prompted with.
        model: the classifier (default: the committed one).

    Returns:
        ``accuracy`` (share recognised as the prompted class), ``per_class`` accuracies,
        ``confusion`` (``{prompted: {predicted: count}}``), ``n`` and ``chance``.
    """
    model = model if model is not None else load_classifier()
    pixels = images_to_tensor(list(images), TOY_IMAGE_SIZE)
    predicted = predict(model, pixels)
    labels = np.asarray([TOY_CLASSES.index(p) for p in prompted], dtype=np.int64)
    confusion = {
        TOY_CLASSES[k]: {
            TOY_CLASSES[j]: int(np.sum(predicted[labels == k] == j))
            for j in range(len(TOY_CLASSES))
        }
        for k in sorted(set(labels))
    }
    return {
        "accuracy": float(np.mean(predicted == labels)),
        "per_class": per_class_accuracy(predicted, labels),
        "confusion": confusion,
        "n": int(len(labels)),
        "chance": 1.0 / len(TOY_CLASSES),
    }
