"""The explorer page in a real browser: Voila serves notebook 12, headless Chromium drives it.

Debian's ``chromium`` and ``chromedriver`` (``make browser-deps``) are required; without them
the test is skipped with the reason. Run it with ``make test-browser`` (it is marked
``browser``, which the default test run leaves out).

The page is waited for, the layer is changed in its drop-down, a source point is clicked, and
the status line and the heat map must follow; the best match the page reports is checked
against ``match_keypoints`` computed here, in this process, for the same pair, layer and
pixel. A screenshot is saved in the test's temporary folder.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "12_explorer.ipynb"
PAGE_PARAMS = {"n_images": 4, "scene_size": 64, "n_pairs": 4}  # a smaller prototype table
PAGE_TIMEOUT = 900  # seconds for Voila to run the notebook (the model loads on 2 busy cores)
STEP_TIMEOUT = 300  # seconds for one update (a new layer: two U-Net passes)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not (CHROMIUM and CHROMEDRIVER),
        reason="Debian's chromium and chromedriver are missing: run `make browser-deps`",
    ),
]
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
pytest.importorskip("voila", reason="voila is not installed")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"voila stopped with exit code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"voila did not listen on port {port} within {timeout} s")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """Voila serving a copy of notebook 12 (its figures go to the temporary folder)."""
    import nbformat
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    root = tmp_path_factory.mktemp("explorer")
    (root / "notebooks").mkdir()
    page = parameterize_notebook(load_notebook_node(str(NOTEBOOK)), PAGE_PARAMS)
    nbformat.write(page, root / "notebooks" / NOTEBOOK.name)
    port = free_port()
    env = {
        **os.environ,
        "DIFFLENS_CACHE": str(root / "cache"),
        "TQDM_DISABLE": "1",
        "HF_HUB_OFFLINE": "1",
    }
    log = open(root / "voila.log", "w")  # noqa: SIM115 (closed below)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "voila",
            NOTEBOOK.name,
            "--no-browser",
            "--Voila.ip=127.0.0.1",
            f"--port={port}",
        ],
        cwd=root / "notebooks",
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, process, 120)
        yield f"http://127.0.0.1:{port}/", root
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.page_load_strategy = "none"  # Voila streams the page while the notebook runs
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,1600",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def defaults() -> dict:
    """The served page's parameters: the notebook's defaults and :data:`PAGE_PARAMS`."""
    import ast

    import papermill as pm

    declared = pm.inspect_notebook(str(NOTEBOOK))
    values = {name: ast.literal_eval(entry["default"]) for name, entry in declared.items()}
    return {**values, **PAGE_PARAMS}


def text(driver, css: str) -> str:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return found[0].text if found else ""


def reference_match(point: tuple[int, int], layer: str) -> tuple[np.ndarray, float]:
    """DIFT's match of the page's first toy pair, computed here from the notebook's defaults."""
    from difflens.correspondence.matching import match_keypoints
    from difflens.data.toy import ToyPairs
    from difflens.features.extractor import FeatureExtractor
    from difflens.models.backbone import load_backbone

    params = defaults()
    pair = ToyPairs(int(params["n_pairs"]), size=int(params["pair_size"]), seed=int(params["seed"]))
    pair = pair[0]
    extractor = FeatureExtractor(load_backbone(params["model"]), int(params["image_size"]))
    maps = [
        extractor.features([im], [layer], 0)[layer][0]
        for im in (pair.source_image, pair.target_image)
    ]
    result = match_keypoints(*maps, pair.source_size, pair.target_size, [point])
    return result.pred[0].numpy(), float(result.score[0])


def test_the_page_follows_layer_changes_and_clicks(served, browser, tmp_path):
    started = time.perf_counter()
    try:
        check_page(served[0], browser, tmp_path)
    except Exception:
        browser.save_screenshot(str(tmp_path / "explorer-failure.png"))
        (tmp_path / "page.html").write_text(browser.page_source)
        raise
    print(f"browser test: {time.perf_counter() - started:.0f} s")


def check_page(url, browser, tmp_path):
    browser.get(url)
    wait = WebDriverWait(browser, PAGE_TIMEOUT, poll_frequency=1)
    # Voila streams the page while it runs the notebook: complete means every cell has run
    wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
    wait.until(lambda d: text(d, ".difflens-s-best"))
    first_layer = text(browser, ".difflens-s-layer")
    picture = browser.find_element(By.CSS_SELECTOR, "img.difflens-target").get_attribute("src")

    # change the layer: the status names it and the heat map is redrawn
    new_layer = "up1" if first_layer != "up1" else "up2.res1"
    Select(browser.find_element(By.CSS_SELECTOR, ".difflens-layer select")).select_by_visible_text(
        new_layer
    )
    step = WebDriverWait(browser, STEP_TIMEOUT, poll_frequency=0.5)
    step.until(lambda d: text(d, ".difflens-s-layer") == new_layer)
    after_layer = browser.find_element(By.CSS_SELECTOR, "img.difflens-target").get_attribute("src")
    assert after_layer != picture

    # click source pixel (40, 100): offsets from the centre of the enlarged picture
    source = browser.find_element(By.CSS_SELECTOR, "img.difflens-source")
    natural = browser.execute_script("return arguments[0].naturalWidth;", source)
    shown = source.size["width"] / int(defaults()["pair_size"])  # screen px per image px
    assert natural % int(defaults()["pair_size"]) == 0  # an integer enlargement
    dx = round((40 + 0.5) * shown - source.size["width"] / 2)
    dy = round((100 + 0.5) * shown - source.size["height"] / 2)
    ActionChains(browser).move_to_element_with_offset(source, dx, dy).click().perform()
    step.until(lambda d: text(d, ".difflens-s-point") == "(40, 100)")
    step.until(
        lambda d: (
            d.find_element(By.CSS_SELECTOR, "img.difflens-target").get_attribute("src")
            != after_layer
        )
    )
    assert "cache hit" in text(browser, ".difflens-s-cache")  # a click needs no U-Net pass
    best = tuple(int(v) for v in text(browser, ".difflens-s-best").strip("()").split(","))
    score = float(text(browser, ".difflens-s-score"))
    browser.save_screenshot(str(tmp_path / "explorer.png"))
    assert (tmp_path / "explorer.png").stat().st_size > 10_000

    pred, expected_score = reference_match((40, 100), new_layer)
    assert best == tuple(int(v) for v in pred)
    assert score == pytest.approx(expected_score, abs=1e-4)
