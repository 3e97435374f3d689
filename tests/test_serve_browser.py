"""The serve page in a real browser: headless Chromium (Debian's chromium and chromium-driver, driven by Selenium)
draws a test digit on the canvas with real mouse events (and checks that the page sends it reduced to the size
the bench sends), drops a PNG file and chooses one, and reads the answers.

A failing test leaves a screenshot of the page and says where. ``MNIST_CNN_SCREENSHOT=<file.png>`` also saves
the page with the drawn digit and its answer (docs/images/serve-page.png is one).
"""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

for _package in ("fastapi", "uvicorn", "swagger_ui_bundle"):
    pytest.importorskip(_package, reason="the serve extra is not installed")
pytest.importorskip("selenium", reason="the dev extra is not installed")

from conftest import Digit
from PIL import Image, ImageDraw

from benchmarks.serving import SENT_SIDE, Server, running_server
from mnist_cnn.inference.predict import predict_images
from mnist_cnn.weights.checkpoints import load_network
from mnist_cnn.weights.manifest import most_accurate
from mnist_cnn.weights.resolve import resolve_checkpoint

for _package in ("fastapi", "uvicorn", "python_multipart", "requests"):
    pytest.importorskip(_package, reason='needs the serve extra: pip install -e ".[serve]"')
pytest.importorskip("selenium", reason='needs Selenium, of the dev extra: pip install -e ".[dev]"')
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
CHROMEDRIVER = shutil.which("chromedriver")
PAD, CELL, STROKE = 280, 10, 20  # the page's canvas, one MNIST pixel on it, the page's stroke width

pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="Chromium or chromedriver not found: apt-get install chromium chromium-driver (.ci/run does)",
    ),
    pytest.mark.xdist_group("serve_browser"),
    pytest.mark.slow,
]


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with running_server() as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=860,740"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console: CSP violations show there
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


@contextmanager
def screenshot_on_failure(browser: WebDriver, path: Path) -> Iterator[None]:
    try:
        yield
    except BaseException as error:
        browser.save_screenshot(str(path))
        error.add_note(f"the page as it was: {path}")
        raise


def strokes(digit: np.ndarray) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """The digit's ink as horizontal strokes on the pad: (start, end) points of each run of ink in a row."""
    segments = []
    for row, line in enumerate(digit > 127):
        edges = np.flatnonzero(np.diff(np.concatenate([[0], line.astype(np.int8), [0]])))
        for first, after in zip(edges[::2], edges[1::2]):
            y = row * CELL + CELL // 2
            segments.append(((first * CELL + CELL // 2, y), ((after - 1) * CELL + CELL // 2, y)))
    return segments


def as_drawn(digit: np.ndarray) -> Image.Image:
    """What the page's canvas holds once ``strokes(digit)`` are drawn: round black lines on white."""
    page = Image.new("L", (PAD, PAD), 255)
    pen = ImageDraw.Draw(page)
    for start, end in strokes(digit):
        pen.line([start, end], fill=0, width=STROKE)
        for x, y in (start, end):
            pen.ellipse([x - STROKE // 2, y - STROKE // 2, x + STROKE // 2, y + STROKE // 2], fill=0)
    return page


@pytest.fixture(scope="module")
def drawable(confident_digits: list[Digit]) -> Digit:
    """A digit that the served model still reads right, with probability > 0.99, once drawn as strokes and reduced as
    the page sends it."""
    network = load_network(resolve_checkpoint(most_accurate()))
    for digit in confident_digits:
        answer = predict_images(network, as_drawn(digit.pixels).reduce(PAD // SENT_SIDE))
        if answer.labels[0] == digit.label and answer.probabilities[0].max() > 0.99:
            return digit
    pytest.fail("no test digit survives being redrawn as strokes")


def answers(browser: WebDriver) -> int:
    """How many answers the page has shown."""
    return int(browser.find_element(By.ID, "result").get_attribute("data-answers") or 0)


def answer_shown(browser: WebDriver, after: int) -> tuple[str, str, list[str]]:
    """(digit, probability, top bar's digit) once the newest request is answered, and more than ``after`` answers
    have been shown."""
    result = browser.find_element(By.ID, "result")
    WebDriverWait(browser, 30).until(
        lambda _: result.get_attribute("data-state") == "done" and answers(browser) > after
    )
    assert browser.find_element(By.ID, "error").text == ""
    bars = browser.find_elements(By.CSS_SELECTOR, "#bars li")
    top = [bar.text.split()[0] for bar in bars if "top" in bar.get_attribute("class")]
    return browser.find_element(By.ID, "digit").text, browser.find_element(By.ID, "probability").text, top


# keeps the bodies the page POSTs, as it sends them
RECORD_SENT = """
window.sentBodies = [];
const send = window.fetch;
window.fetch = (url, options) => {
  if (options && options.body) window.sentBodies.push(options.body);
  return send(url, options);
};
"""


def seen_ink(browser: WebDriver) -> int:
    """The sum of the 28×28 image the page shows as what the model saw."""
    return browser.execute_script(
        "return document.getElementById('seen').getContext('2d').getImageData(0, 0, 28, 28).data"
        ".reduce((sum, value, i) => i % 4 === 3 ? sum : sum + value, 0);"
    )


def test_a_digit_drawn_with_the_mouse_is_read_and_shown(
    browser: WebDriver, server: Server, drawable: Digit, tmp_path: Path
) -> None:
    browser.get(server.url)
    with screenshot_on_failure(browser, tmp_path / "drawn-digit-failure.png"):
        # the page names the model and the default backend once /health has answered
        WebDriverWait(browser, 30).until(lambda page: "onnx" in page.find_element(By.ID, "model").text)
        pad = browser.find_element(By.ID, "pad")
        assert browser.execute_script("return [arguments[0].clientWidth, arguments[0].clientHeight]", pad) == [PAD, PAD]
        browser.execute_script(RECORD_SENT)
        actions = ActionChains(browser, duration=5)
        for (x0, y0), (x1, y1) in strokes(drawable.pixels):  # offsets are from the pad's centre
            actions.move_to_element_with_offset(pad, x0 - PAD // 2, y0 - PAD // 2).click_and_hold()
            actions.move_by_offset(x1 - x0, y1 - y0).release()
        actions.perform()
        digit, probability, top = answer_shown(browser, after=0)
        assert digit == str(drawable.label) and top == [digit]
        assert float(probability.rstrip(" %")) > 90
        (sent,) = json.loads(browser.execute_script("return window.sentBodies[0];"))["images"]
        assert Image.open(io.BytesIO(base64.b64decode(sent.partition(",")[2]))).size == (SENT_SIDE, SENT_SIDE)
        assert len(browser.find_elements(By.CSS_SELECTOR, "#bars li")) == 10 and seen_ink(browser) > 0
        if os.environ.get("MNIST_CNN_SCREENSHOT"):
            browser.save_screenshot(os.environ["MNIST_CNN_SCREENSHOT"])

        browser.find_element(By.ID, "clear").click()
        assert browser.find_element(By.ID, "digit").text == "?" and seen_ink(browser) == 0
        pixels = "document.getElementById('pad').getContext('2d').getImageData(0, 0, 280, 280).data"
        assert browser.execute_script(f"return {pixels}.every(value => value === 255);")  # white again


DROP = """
const transfer = new DataTransfer();
transfer.items.add(document.getElementById('drop-source').files[0]);
const drop = new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true});
document.getElementById('pad').dispatchEvent(drop);
"""


def test_a_dropped_or_chosen_png_file_is_read(
    browser: WebDriver, server: Server, confident_digits: list[Digit], tmp_path: Path
) -> None:
    chosen = confident_digits[0]
    dropped = next(digit for digit in confident_digits if digit.label != chosen.label)
    for digit in (dropped, chosen):
        Image.open(io.BytesIO(digit.png)).save(tmp_path / f"digit-{digit.label}.png")
    browser.get(server.url)
    with screenshot_on_failure(browser, tmp_path / "file-failure.png"):
        # A file can only reach a page through a file input: one outside the page's own holds the file to drop.
        browser.execute_script(
            "const input = document.createElement('input'); input.type = 'file'; input.id = 'drop-source';"
            "input.hidden = true; document.body.append(input);"
        )
        browser.find_element(By.ID, "drop-source").send_keys(str(tmp_path / f"digit-{dropped.label}.png"))
        browser.execute_script(DROP)
        assert answer_shown(browser, after=0)[0] == str(dropped.label) and seen_ink(browser) > 0

        browser.find_element(By.ID, "file").send_keys(str(tmp_path / f"digit-{chosen.label}.png"))
        assert answer_shown(browser, after=1)[0] == str(chosen.label)


def test_an_answer_flagged_uncertain_says_so(browser: WebDriver, server: Server) -> None:
    browser.get(server.url)
    flag = browser.find_element(By.ID, "uncertain")
    shown = []
    for uncertain in (True, False):  # what the page does with a prediction that carries the flag
        prediction = {"label": 4, "probability": 0.41, "probabilities": [0.41] + [0.0655] * 9, "uncertain": uncertain}
        browser.execute_script("showAnswer(arguments[0]);", prediction)
        shown.append((browser.find_element(By.ID, "digit").text, flag.is_displayed()))
    assert shown == [("4", True), ("4", False)]


def test_the_page_and_the_docs_run_under_the_servers_content_security_policy(
    browser: WebDriver, server: Server
) -> None:
    """Both pages load only from the server itself, and break none of its Content-Security-Policy: Swagger UI at
    /docs shows the API's operations; the drawing page names the model."""
    browser.get_log("browser")  # what earlier tests left in the console
    browser.get(f"{server.url}/docs")
    WebDriverWait(browser, 30).until(lambda page: page.find_elements(By.CSS_SELECTOR, ".opblock-summary-path"))
    paths = {element.text for element in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert {"/predict", "/health", "/models"} <= paths
    browser.get(server.url)
    WebDriverWait(browser, 30).until(lambda page: "onnx" in page.find_element(By.ID, "model").text)
    console = [entry["message"] for entry in browser.get_log("browser")]
    assert [line for line in console if "Content Security Policy" in line or "Refused to" in line] == []
