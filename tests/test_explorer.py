"""The explorer without a browser: widget values set, clicks simulated, what is drawn and
computed checked against the correspondence module, explicit upsampling, scipy and hand counts."""

from __future__ import annotations

import io
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from fixtures.keypoint_trees import make_pf_willow_tree
from PIL import Image
from scipy.spatial.distance import cdist

from difflens.correspondence.matching import cosine_map, match_keypoints
from difflens.data import load_pairs
from difflens.data.scene import Scene
from difflens.data.toy import ToyPairs
from difflens.features.prototypes import PrototypeTable
from difflens.viz.explorer import OWN_FILES, explorer
from difflens.viz.explorer_images import blend, display_to_image, enlarge, heat_colours
from difflens.viz.explorer_logic import (
    FeatureCache,
    MatchExplorer,
    MatchSetting,
    extractor_loader,
    load_table,
    save_table,
)

LAYER = "up1"  # 64 channels, 16 x 16 cells for a 64 px input: upsampled to 96 px pictures
PAIRS = ToyPairs(3, kind="semantic", size=96)


@pytest.fixture(scope="module")
def opened():
    """The toy model, opened once for the module (``extractor_for`` of every explorer)."""
    load = extractor_loader(64)
    extractors = {}

    def extractor_for(model):
        if model not in extractors:
            extractors[model] = load(model)
        return extractors[model]

    return extractor_for


@pytest.fixture
def app(opened):
    logic = MatchExplorer(opened, cache=FeatureCache())
    return explorer({"toy pairs": PAIRS}, ["toy"], layer=LAYER, logic=logic)


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def reference_maps(extractor, pair, layer, timestep=0, ensemble=1):
    """The maps as the correspondence pipeline takes them: both images in one batch."""
    maps = extractor.features(
        [pair.source_image, pair.target_image], [layer], timestep, ensemble=ensemble
    )
    return maps[layer][0], maps[layer][1]


def test_click_heat_map_equals_the_correspondence_modules_cosine_map(app, opened):
    tab = app.matches
    zoom = tab.zoom
    assert zoom == 3  # 96 px pictures enlarged towards 320 screen pixels
    tab.on_event({"type": "click", "dataX": 3 * 40 + 2, "dataY": 3 * 61 + 1})  # pixel (40, 61)
    view = tab.view
    assert view.point == (40, 61) and view.setting == MatchSetting("toy", LAYER, 0, 1)
    pair = PAIRS[0]
    fs, ft = reference_maps(opened("toy"), pair, LAYER)
    # the explorer computes each image alone; the batch of two gives the same features
    np.testing.assert_allclose(
        tab.logic.feature_map(view.setting, pair.source_image)[0], fs, rtol=1e-5, atol=1e-5
    )  # two float32 forward passes: thread scheduling moves values of ~3 by ~1e-5
    expected = cosine_map(fs, ft, (96, 96), (96, 96), (40, 61)).numpy()
    np.testing.assert_allclose(view.heat, expected, rtol=0, atol=1e-5)
    # and EXACTLY the correspondence module's map of the explorer's own features
    own_s = tab.logic.feature_map(view.setting, pair.source_image)[0]
    own_t = tab.logic.feature_map(view.setting, pair.target_image)[0]
    np.testing.assert_array_equal(
        view.heat, cosine_map(own_s, own_t, (96, 96), (96, 96), (40, 61)).numpy()
    )
    # DIFT's explicit computation: upsample both maps, normalise, dot product
    up_s = F.interpolate(own_s[None].double(), size=(96, 96), mode="bilinear")[0]
    up_t = F.interpolate(own_t[None].double(), size=(96, 96), mode="bilinear")[0]
    query = F.normalize(up_s[:, 61, 40], dim=0)
    explicit = torch.einsum("c,chw->hw", query, F.normalize(up_t, dim=0)).numpy()
    np.testing.assert_allclose(view.heat, explicit, atol=1e-9)


def test_top_five_marks_are_the_five_largest_values_and_drawn_there(app, opened):
    tab = app.matches
    view = tab.click(20, 30)
    flat = np.sort(view.heat.ravel())[::-1]
    np.testing.assert_array_equal(view.top_scores, flat[:5])
    assert len({tuple(p) for p in view.top.tolist()}) == 5
    for (x, y), score in zip(view.top, view.top_scores):
        assert view.heat[y, x] == score
    # the best match is match_keypoints' prediction for the same point (up to a near-tie)
    fs = tab.logic.feature_map(view.setting, PAIRS[0].source_image)[0]
    ft = tab.logic.feature_map(view.setting, PAIRS[0].target_image)[0]
    pred = match_keypoints(fs, ft, (96, 96), (96, 96), [[20, 30]]).pred[0].numpy().astype(int)
    assert view.heat[pred[1], pred[0]] >= view.best_score - 1e-10
    # what is drawn: the heat map over the target, changed only in rings around the top five
    shown = decode(tab.target.value)
    zoom = tab.zoom
    plain = enlarge(blend(PAIRS[0].target_image, heat_colours(view.heat), 0.6), zoom)
    assert shown.shape == plain.shape == (96 * zoom, 96 * zoom, 3)
    changed = np.argwhere(np.any(shown != plain, axis=2))  # (row, col) of marked pixels
    centres = (view.top[:, ::-1] + 0.5) * zoom - 0.5  # (row, col) of the five positions
    distance = np.linalg.norm(changed[:, None, :] - centres[None], axis=2).min(axis=1)
    assert len(changed) and distance.max() <= 2.5 * 1.5 * zoom + 2
    for centre in centres:  # every position has its ring
        assert np.linalg.norm(changed - centre, axis=1).min() <= 2.5 * 1.5 * zoom + 2
    # and the clicked point is marked on the source picture
    source = decode(tab.source.value)
    assert tuple(source[30 * zoom + 1, 20 * zoom + 1]) != tuple(PAIRS[0].source_image[30, 20])
    assert "(20, 30)" in tab.status.value and "({}, {})".format(*view.best) in tab.status.value


def test_layer_and_timestep_changes_redraw_and_a_seen_setting_is_a_cache_hit(app):
    tab = app.matches
    assert not tab.view.lookup.source_hit  # the first view computed its maps
    first = tab.click(50, 40)
    assert first.lookup.hit  # a click on the same setting needs no U-Net pass
    picture = tab.target.value
    tab.layer.value = "up2.res1"
    second = tab.view
    assert second.setting.layer == "up2.res1" and second.point == (50, 40)
    assert not second.lookup.hit and "computed" in tab.status.value
    assert not np.array_equal(second.heat, first.heat) and tab.target.value != picture
    tab.timestep.value = 50
    third = tab.view
    assert third.setting.timestep == 50 and not third.lookup.hit
    tab.timestep.value = 0
    tab.layer.value = LAYER  # seen before: both maps from memory, same map as the first time
    back = tab.view
    assert back.lookup.source_hit and back.lookup.target_hit
    assert "cache hit" in tab.status.value
    np.testing.assert_array_equal(back.heat, first.heat)
    assert tab.target.value == picture
    assert tab.logic.cache.maps.hits >= 2


def test_pair_choice_ensemble_and_the_click_mapping(app):
    tab = app.matches
    tab.index.value = 2
    assert tab.view.pair.startswith(PAIRS[2].pair_id)
    assert tab.view.point == tuple(np.rint(PAIRS[2].source_points[0]).astype(int))
    tab.ensemble.value = 2
    assert tab.view.setting.ensemble == 2
    assert display_to_image(31, 2, 3, (96, 96)) == (10, 0)
    assert display_to_image(10_000, -5, 3, (96, 96)) == (95, 0)  # clamped into the image


def test_own_files_by_path_and_by_upload(app, tmp_path):
    tab = app.matches
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 56, 3), dtype=np.uint8) for _ in range(2)]
    paths = []
    for k, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"im{k}.png")
        paths.append(str(tmp_path / f"im{k}.png"))
    tab.collection.value = OWN_FILES
    assert tab.files.layout.display is None and tab.index.layout.display == "none"
    tab.source_path.value, tab.target_path.value = paths
    tab.use_files.click()
    view = tab.view
    assert view.pair == "im0.png -> im1.png" and view.heat.shape == (40, 56)
    np.testing.assert_array_equal(tab.logic.pair.source, images[0])
    png = (tmp_path / "im1.png").read_bytes()
    tab.source_upload.value = (
        {
            "name": "up.png",
            "type": "image/png",
            "size": len(png),
            "content": memoryview(png),
            "last_modified": datetime.now(timezone.utc),
        },
    )
    tab.use_files.click()
    np.testing.assert_array_equal(tab.logic.pair.source, images[1])  # the upload wins
    tab.target_path.value = str(tmp_path / "missing.png")
    tab.target_upload.value = ()
    tab.use_files.click()
    assert "does not exist" in tab.message.value


def test_a_keypoint_dataset_from_load_pairs(opened, tmp_path):
    dataset = load_pairs("pf-willow", make_pf_willow_tree(tmp_path))
    logic = MatchExplorer(opened, cache=FeatureCache())
    app = explorer({"pf-willow": dataset}, ["toy"], layer=LAYER, logic=logic)
    pair = dataset[0]
    assert app.matches.view.pair.startswith(pair.pair_id)
    assert app.matches.view.heat.shape == pair.target_image.shape[:2]
    assert app.matches.index.max == len(dataset) - 1


# ---------------------------------------------------------------------- distances


def scenes_and_table():
    """Two images, three objects each (cat, cat, dog / cat, dog, dog), hand-set prototypes."""
    scenes, rows, features = [], [], []
    classes = {"a": ["cat", "cat", "dog"], "b": ["cat", "dog", "dog"]}
    rng = np.random.default_rng(3)
    for image_id, names in classes.items():
        masks = np.zeros((3, 12, 12), bool)
        for k in range(3):
            masks[k, 4 * k : 4 * k + 3, 2:9] = True
        scenes.append(Scene(np.zeros((12, 12, 3), np.uint8), masks, names, [1, 2, 3], image_id))
        for k, name in enumerate(names):
            rows.append(
                {
                    "object_key": f"{image_id}:{k + 1}",
                    "image_id": image_id,
                    "source_image": image_id,
                    "instance_id": k + 1,
                    "instance_key": f"{image_id}:{k + 1}",
                    "class_name": name,
                    "source": "original",
                    "area_fraction": 21 / 144,
                }
            )
            features.append(rng.normal(size=5))
    return scenes, PrototypeTable(pd.DataFrame(rows), np.array(features, np.float32))


def test_distance_tab_places_a_pair_among_the_sets_by_hand(opened):
    scenes, table = scenes_and_table()
    logic = MatchExplorer(opened, cache=FeatureCache())
    app = explorer(
        {"toy pairs": PAIRS},
        ["toy"],
        layer=LAYER,
        logic=logic,
        tables={"hand": table},
        scenes=scenes,
        metric="cosine",
    )
    tab = app.distances
    assert [label for label, _ in tab.object_a.options][:2] == ["a: cat#1", "a: cat#2"]
    view = tab.view  # the first two objects: two cats of image a
    ref = cdist(
        table.features[[0]].astype(np.float64), table.features[[1]].astype(np.float64), "cosine"
    )[0, 0]
    assert view.distance == pytest.approx(ref, abs=1e-12)
    assert view.sets == ("scsi",)
    tab.object_b.value = "b:2"  # a cat of image a and a dog of image b
    view = tab.view
    assert view.sets == ("dcdi",)
    # dcdi pairs by hand: cat-dog across images: a has 2 cats x b's 2 dogs + a's dog x b's cat
    everything = cdist(
        table.features.astype(np.float64), table.features.astype(np.float64), "cosine"
    )
    dcdi = [
        everything[i, j]
        for i in range(3)
        for j in range(3, 6)
        if table.meta.class_name[i] != table.meta.class_name[j]
    ]
    assert len(dcdi) == 5
    assert view.below["dcdi"] == pytest.approx(np.mean(np.array(dcdi) <= view.distance + 1e-12))
    assert "dcdi" in tab.status.value and f"{view.distance:.4f}" in tab.status.value
    assert decode(tab.picture.value).shape[0] > 200  # the figure was drawn
    tab.object_b.value = "a:1"  # an object with itself: distance 0, in no set
    assert tab.view.sets == () and tab.view.distance == pytest.approx(0, abs=1e-12)


def test_distance_figure_line_and_masks():
    from difflens.viz.explorer import distance_figure
    from difflens.viz.explorer_logic import DistanceExplorer

    scenes, table = scenes_and_table()
    logic = DistanceExplorer({"hand": table}, scenes[:1])  # image b's scene is unknown
    view = logic.compare("hand", "a:1", "b:3", "euclidean")
    fig = distance_figure(view, logic)
    violins, first, second = fig.axes[0], fig.axes[1], fig.axes[2]
    (line,) = [ln for ln in violins.lines if str(ln.get_label()).startswith("this pair")]
    assert line.get_ydata()[0] == pytest.approx(view.distance)
    assert first.images and first.collections  # image a with the outline of object a:1
    assert not second.images and "no image" in second.texts[0].get_text()


def test_prototype_table_file_round_trip(tmp_path):
    _, table = scenes_and_table()
    path = save_table(table, tmp_path / "hand")
    back = load_table(path)
    np.testing.assert_array_equal(back.features, table.features)
    pd.testing.assert_frame_equal(back.meta, table.meta)


def test_model_choice_keeps_the_layer_and_keys_the_cache_by_model(opened):
    # a second name for the same network: the cache must not serve one model's maps to another
    logic = MatchExplorer(lambda name: opened("toy"), cache=FeatureCache())
    app = explorer({"toy pairs": PAIRS}, ["toy", "toy again"], layer=LAYER, logic=logic)
    tab = app.matches
    first = tab.view
    tab.model.value = "toy again"
    second = tab.view
    assert second.setting == MatchSetting("toy again", LAYER, 0, 1) and tab.layer.value == LAYER
    assert not second.lookup.source_hit and not second.lookup.target_hit
    np.testing.assert_array_equal(second.heat, first.heat)  # the same network, the same map
    assert tab.timestep.max == opened("toy").num_train_timesteps - 1
