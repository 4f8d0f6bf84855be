"""The shape classifier that checks generated samples: its renders, its report and the
committed classifier on fresh held-out renders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from difflens.data.toy import TOY_CLASSES, make_toy_scene
from difflens.models.shape_classifier import (
    CLASSIFIER_TEST_OFFSET,
    check_samples,
    load_classifier,
    per_class_accuracy,
    predict,
    render_set,
)


def test_renders_hold_one_class_each_balanced_and_match_their_scenes():
    pixels, labels = render_set(16, "test", 123)
    assert pixels.shape == (16, 3, 64, 64) and pixels.min() >= -1 and pixels.max() <= 1
    assert list(labels) == [i % 8 for i in range(16)]
    for i in (0, 9):  # one rendered at 64 px, one at 128 px
        size = 64 if (i // 8) % 2 == 0 else 128
        scene = make_toy_scene(123 + i, size, classes=(TOY_CLASSES[labels[i]],), split="test")
        assert set(scene.class_names) == {TOY_CLASSES[labels[i]]}


class _Fixed(torch.nn.Module):
    """Predicts class ``answers[i]`` for the ``i``-th image it sees."""

    def __init__(self, answers):
        super().__init__()
        self.answers = list(answers)

    def forward(self, pixels):
        out = torch.zeros(len(pixels), len(TOY_CLASSES))
        for row, k in enumerate(self.answers[: len(pixels)]):
            out[row, k] = 1.0
        self.answers = self.answers[len(pixels) :]
        return out


def test_sample_check_counts_by_hand():
    images = np.zeros((5, 64, 64, 3), np.uint8)
    prompted = ["arrow", "arrow", "house", "house", "key"]
    answers = [0, 5, 1, 1, 0]  # arrow right, arrow -> key, house right twice, key -> arrow
    report = check_samples(images, prompted, _Fixed(answers))
    assert report["accuracy"] == pytest.approx(3 / 5)
    assert report["per_class"] == {"arrow": 0.5, "house": 1.0, "key": 0.0}
    assert report["confusion"]["arrow"]["key"] == 1 and report["confusion"]["key"]["arrow"] == 1
    assert sum(report["confusion"]["house"].values()) == 2
    assert report["chance"] == 1 / 8 and report["n"] == 5


def test_per_class_accuracy_by_hand():
    predicted, labels = np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2])
    assert per_class_accuracy(predicted, labels) == {"arrow": 1.0, "house": 1.0, "ell": 0.5}


def test_the_committed_classifier_recognises_fresh_held_out_renders():
    model = load_classifier()
    # test renders past the ones its report was measured on
    pixels, labels = render_set(80, "test", CLASSIFIER_TEST_OFFSET + 10_000)
    assert np.mean(predict(model, pixels) == labels) >= 0.85
