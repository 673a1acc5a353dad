"""kedro-viz as a user sees it: `kedro viz run` served on 127.0.0.1 and a free port, loaded in
headless Chromium (Debian's chromium and chromium-driver, which .ci/run installs when missing),
driven by Selenium: the pipeline's node names, its layers and a mask set's preview image."""

from __future__ import annotations

import base64
import io
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kedro_project import KEDRO, copy_project, run_kedro

pytestmark = pytest.mark.slow

CHROMEDRIVER = shutil.which("chromedriver")
LAYERS = ["raw", "intermediate", "models", "model_output", "refinement", "reporting"]


def free_port() -> int:
    """A free port below 49152: kedro-viz refuses the ephemeral range the OS would pick."""
    for port in range(41000 + os.getpid() % 4000, 49152):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 41000 and 49151")


def wait_until_served(url: str, server: subprocess.Popen, timeout_s: float = 180.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"kedro viz run exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/api/main", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(1.0)
    raise TimeoutError(f"kedro viz run did not serve {url} within {timeout_s} s")


@pytest.fixture(scope="module")
def viz_url(tmp_path_factory):
    """A project that ran ingestion (so a mask set exists), served by `kedro viz run`."""
    project = copy_project(tmp_path_factory.mktemp("project"))
    run_kedro(project, "run", "--env=test", "--pipeline=ingestion")
    url = f"http://127.0.0.1:{free_port()}"
    host, port = url.removeprefix("http://").split(":")
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "PYTHONWARNINGS": "ignore"}
    with (project / "viz.log").open("w") as log:
        server = subprocess.Popen(
            [*KEDRO, "viz", "run", "--env=test", f"--host={host}", f"--port={port}",
             "--no-browser"], cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_until_served(url, server)
        yield url
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)  # kedro viz run serves from child processes
            server.wait(timeout=30)


@pytest.fixture
def browser():
    if CHROMEDRIVER is None:
        pytest.skip("no chromedriver: apt-get install chromium chromium-driver (.ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1600,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_the_pseudo_labels_pipeline_its_layers_and_a_mask_preview(viz_url, browser, tmp_path):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from semples.pipelines import ingestion, pseudo_labels

    browser.get(f"{viz_url}/?pid=pseudo_labels")
    wait = WebDriverWait(browser, 60)
    pipeline = ingestion.create_pipeline() + pseudo_labels.create_pipeline()  # as registered
    expected = {node.name for node in pipeline.nodes}

    def nodes_by_label(driver) -> dict:
        # textContent, not .text: a label under the tour's popup or past the window's edge
        # counts as drawn (.text is "" for it, which made this test flaky)
        nodes = driver.find_elements(By.CSS_SELECTOR, "g.pipeline-node")
        return {node.get_attribute("textContent").strip(): node for node in nodes}

    try:
        shown = wait.until(lambda d: (labels := nodes_by_label(d)).keys() >= expected and labels)
    except TimeoutException:
        missing = expected - set(nodes_by_label(browser))
        pytest.fail(f"kedro-viz did not draw the nodes {sorted(missing)} within 60 s")
    layers = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".pipeline-layer-name")]
    assert layers == LAYERS

    browser.execute_script(
        "arguments[0].dispatchEvent(new MouseEvent('click', {bubbles: true}))",
        shown["generated_masks"],
    )
    preview = wait.until(
        lambda d: d.find_elements(By.CSS_SELECTOR, "img.pipeline-metadata__plot-image")
    )[0]
    source = preview.get_attribute("src")
    assert source.startswith("data:image/png;base64,")
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1]))))
    assert image.ndim == 3 and len(np.unique(image.reshape(-1, image.shape[-1]), axis=0)) > 2

    screenshot = tmp_path / "kedro-viz.png"
    assert browser.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
    if os.environ.get("SEMPLES_VIZ_SCREENSHOT"):  # how docs/kedro-viz.png is made
        shutil.copy(screenshot, Path(os.environ["SEMPLES_VIZ_SCREENSHOT"]))
