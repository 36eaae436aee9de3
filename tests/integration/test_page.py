"""The page to try a model and the API docs, in a real browser, against the real servers.

Debian's chromium, driven by Selenium through Debian's chromedriver, opens the gateway (a
real uvicorn process with an API key) in front of the real tritonserver serving the model
trained here.  The browser reaches nothing but loopback (a dead proxy for everything else),
and every URL it asked for is checked to be the gateway's.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as shown
from selenium.webdriver.support.ui import Select, WebDriverWait

from benchmarks import accuracy
from d2_triton.cache import cache_dir
from d2_triton.client import DetectionClient
from d2_triton.names import PipelineNames
from helpers.servers import GatewayProcess
from training import shapes

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# As root, headless, and quiet: no first-run, sync or component-update traffic.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,1200",
    # Everything but loopback (which Chromium never proxies) goes to a port nobody serves.
    "--proxy-server=http://127.0.0.1:9",
)
API_KEY = "page-test-key"
WAIT_S = 120  # a hang catcher: a detection here takes about a second
SCREENSHOT = cache_dir() / "reports" / "page.png"
# Where a detection's "label score" tag may be drawn beyond its box: pixels up, and right of
# the box's left edge.
TAG_ROOM = (17, 90)


@pytest.fixture(scope="module")
def trained_repository(tmp_path_factory, trained_model) -> Path:
    """The trained model's default pipeline alone (hard links into the accuracy exports)."""
    source = accuracy.export_variants(trained_model, accuracy.VARIANTS, accuracy.EXPORTS)
    target = tmp_path_factory.mktemp("trained") / "repository"
    for folder in PipelineNames("default").models().values():
        shutil.copytree(source / folder, target / folder, copy_function=os.link)
    return target


@pytest.fixture(scope="module")
def page_gateway(server_pool, trained_repository, tmp_path_factory):
    server = server_pool.get(trained_repository, "trained")
    log = tmp_path_factory.mktemp("page-gateway") / "gateway.log"
    with GatewayProcess(server.http_url, log, server.settings.admin_key, API_KEY=API_KEY) as gw:
        gw.triton_url = server.http_url
        yield gw


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def requested_urls(driver) -> list[str]:
    """The http(s) URLs the browser sent requests to since the last call.

    Requests the browser itself refused to send (the gateway's Content-Security-Policy) are
    left out: they never left it.  Requests to other hosts that failed at the dead proxy are
    not: they did try.
    """
    sent, refused = {}, set()
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message["params"]
        if message["method"] == "Network.requestWillBeSent":
            sent[params["requestId"]] = params["request"]["url"]
        elif message["method"] == "Network.loadingFailed" and params.get("blockedReason"):
            refused.add(params["requestId"])
    urls = [url for key, url in sent.items() if key not in refused]
    return [url for url in urls if url.startswith(("http:", "https:"))]


def open_page(driver, gateway) -> None:
    """The page, with the API key entered when it asks, and the pipelines listed."""
    wait = WebDriverWait(driver, WAIT_S)
    driver.get(f"{gateway.url}/")
    wait.until(shown.visibility_of_element_located((By.ID, "key")))
    driver.find_element(By.ID, "key").send_keys(API_KEY + "\t")  # change: list the models
    wait.until(lambda d: "default" in [o.get_attribute("value") for o in models(d).options])


def models(driver) -> Select:
    return Select(driver.find_element(By.ID, "model"))


def detect(driver, image: Path, score: str) -> None:
    driver.find_element(By.ID, "file").send_keys(str(image))
    driver.find_element(By.ID, "score").clear()
    driver.find_element(By.ID, "score").send_keys(score)
    driver.find_element(By.ID, "run").click()
    try:
        WebDriverWait(driver, WAIT_S).until(
            lambda d: (
                "Detections by" in d.find_element(By.ID, "status").text
                or d.find_element(By.ID, "error").is_displayed()
            )
        )
    except TimeoutException:
        status = driver.find_element(By.ID, "status").text
        raise AssertionError(f"no answer shown: {status!r}, {driver.get_log('browser')}") from None


def table(driver) -> list[tuple[str, str]]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#detections tbody tr")
    return [tuple(td.text for td in row.find_elements(By.TAG_NAME, "td"))[1:3] for row in rows]


def canvas_pixels(driver) -> np.ndarray:
    """The picture, at the image's own size (a small image is drawn enlarged, in blocks)."""
    canvas = driver.find_element(By.ID, "picture")
    data = driver.execute_script("return arguments[0].toDataURL();", canvas)
    png = base64.b64decode(data.split(",", 1)[1])
    scale = int(canvas.get_attribute("data-scale"))
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)
    return pixels[::scale, ::scale]


def val_image() -> Path:
    """The val image with the most shapes (the first of them)."""
    val = shapes.splits(accuracy.DATA)["val"]
    dataset = json.loads(val.json_file.read_text())
    counts = Counter(annotation["image_id"] for annotation in dataset["annotations"])
    busiest = max(dataset["images"], key=lambda image: (counts[image["id"]], -image["id"]))
    return val.image_root / busiest["file_name"]


def test_the_page_shows_a_val_images_detections_as_the_api_answers(browser, page_gateway):
    image = val_image()
    with DetectionClient(page_gateway.triton_url) as client:
        expected = client.detect(image.read_bytes(), score_threshold=0.5)
    assert len(expected) > 0 and set(expected.labels) <= set(shapes.CLASSES)
    open_page(browser, page_gateway)
    detect(browser, image, "0.5")
    assert not browser.find_element(By.ID, "error").is_displayed()
    by_score = sorted(zip(expected.labels, expected.scores, strict=True), key=lambda pair: -pair[1])
    assert table(browser) == [(label, f"{score:.3f}") for label, score in by_score]
    timing = browser.find_element(By.ID, "timing").text
    assert re.fullmatch(r"Server: \d+ ms \(Triton \d+ ms\)", timing), timing
    document = json.loads(browser.find_element(By.ID, "json").get_attribute("textContent"))
    assert [d["label"] for d in document["detections"]] == expected.labels

    # The picture: the image itself outside the boxes, detections drawn inside them.
    drawn = canvas_pixels(browser)
    original = np.asarray(Image.open(image).convert("RGB"), dtype=np.int16)
    assert drawn.shape == original.shape
    inside = np.zeros(drawn.shape[:2], bool)  # the boxes, and room for their tags
    for x1, y1, x2, y2 in expected.boxes.astype(int):
        top, right = max(y1 - TAG_ROOM[0], 0), max(x2, x1 + TAG_ROOM[1])
        inside[top : y2 + 4, max(x1 - 3, 0) : right + 4] = True
    difference = np.abs(drawn - original).max(axis=2)
    assert difference[~inside].mean() < 3, "the image is not drawn as it is"
    assert difference[inside].mean() > 10, "no detections drawn"

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT))  # docs/page.png is one
    browser.find_element(By.ID, "by-score").click()  # lowest score first
    assert table(browser) == [(label, f"{score:.3f}") for label, score in reversed(by_score)]
    assert all(url.startswith(page_gateway.url) for url in requested_urls(browser))


def test_a_file_that_is_no_image_shows_the_gateways_message(browser, page_gateway, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is not an image\n" * 10)
    answer = requests.post(
        f"{page_gateway.url}/v1/detect",
        data=broken.read_bytes(),
        headers={"X-API-Key": API_KEY, "Content-Type": "image/jpeg"},
        timeout=WAIT_S,
    )
    assert answer.status_code == 400
    open_page(browser, page_gateway)
    detect(browser, broken, "0.5")
    assert browser.find_element(By.ID, "error").text == f"400: {answer.json()['detail']}"
    assert not browser.find_element(By.ID, "result").is_displayed()


def test_the_api_docs_list_the_operations_offline(browser, page_gateway):
    wait = WebDriverWait(browser, WAIT_S)
    requested_urls(browser)  # drop what earlier tests asked for
    browser.get(f"{page_gateway.url}/docs")
    wait.until(shown.presence_of_element_located((By.CSS_SELECTOR, ".opblock-summary-path")))
    paths = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert {"/v1/detect", "/v1/detect/render", "/health", "/v1/models", "/metrics"} <= paths
    browser.get(f"{page_gateway.url}/redoc")
    wait.until(shown.text_to_be_present_in_element((By.TAG_NAME, "h1"), "d2-triton gateway"))
    urls = requested_urls(browser)
    elsewhere = [url for url in urls if not url.startswith(page_gateway.url)]
    assert urls and not elsewhere, elsewhere
