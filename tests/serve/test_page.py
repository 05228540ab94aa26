"""The web page at ``/`` in a real headless Chromium: a digit drawn with the mouse on the canvas
is answered as the server's ``/predict`` answers the same pixels; uploads, errors, versions and a
tokened server work from the page too.

The browser tests need Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them);
they are skipped without. Selenium is pointed at both binaries, so it never downloads a driver.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image
from selenium import webdriver
from selenium.webdriver import Chrome
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions import interaction
from selenium.webdriver.common.actions.action_builder import ActionBuilder
from selenium.webdriver.common.actions.pointer_input import PointerInput
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

from deepline.serve.app import create_app
from deepline.serve.repository import add_bundle
from deepline.serve.server import BackgroundServer
from deepline.serve.settings import ServeSettings
from tests.serve.conftest import TOKEN

CHROMIUM = next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
)
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip(
        "no Chromium: install Debian's chromium and chromium-driver (.ci/run does)",
        allow_module_level=True,
    )

WAIT_S = 15

# Strokes in canvas pixels (the canvas is 280 x 280 on the page).
Strokes = list[list[tuple[float, float]]]
ONE: Strokes = [[(140, 45), (142, 235)]]
SEVEN: Strokes = [[(75, 60), (205, 60), (125, 235)]]
ZERO: Strokes = [
    [
        (140 + 65 * float(np.sin(a)), 140 - 90 * float(np.cos(a)))
        for a in np.linspace(0, 2 * np.pi, 25)  # an upright ellipse, closed
    ]
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1000,1400")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def text_server(
    text_bundles: dict[str, Path],
    diabetes_bundle: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[BackgroundServer]:
    """A few-step character GPT (``gpt``, a text model), a text classifier (``reviews``, a
    tokens model) and a regression on named features (``diabetes``): the page's other panels."""
    repository = tmp_path_factory.mktemp("page-text")
    for name, bundle in {**text_bundles, "diabetes": diabetes_bundle}.items():
        add_bundle(bundle, repository, name)
    with BackgroundServer(create_app(repository, ServeSettings(max_batch_size=1))) as running:
        yield running


def wait(driver: WebDriver, condition: Callable[[WebDriver], Any], message: str) -> None:
    WebDriverWait(driver, WAIT_S).until(lambda d: condition(d), message)


def open_page(driver: WebDriver, url: str, model: str, version: int | None = None) -> None:
    """Open the page and pick a model (and version); returns once the model's panel is up."""
    driver.get(url)
    body = driver.find_element(By.TAG_NAME, "body")
    for select, value in (("model", None), ("model", model), ("version", version)):
        if value is not None:
            Select(driver.find_element(By.ID, select)).select_by_value(str(value))
        wait(
            driver,
            lambda d: body.get_attribute("data-ready") == "true",
            f"the page did not load {model} {version}",
        )
    panels = {"lenet": "image-panel", "mnist": "image-panel", "gpt": "text-panel",
              "diabetes": "fields-panel", "movies": "history-panel",
              "gan": "latent-panel"}  # fmt: skip
    panel = panels.get(model, "input-panel")
    wait(driver, lambda d: d.find_element(By.ID, panel).is_displayed(), f"no {panel}")


def draw(driver: WebDriver, strokes: Strokes) -> None:
    """Real mouse strokes on the canvas (offsets from its centre, as Selenium 4 counts them)."""
    canvas = driver.find_element(By.ID, "canvas")
    assert canvas.size == {"width": 280, "height": 280}
    for points in strokes:
        actions = ActionChains(driver, duration=10)
        x, y = points[0]
        actions.move_to_element_with_offset(canvas, round(x - 140), round(y - 140))
        actions.click_and_hold()
        for nx, ny in points[1:]:
            steps = max(1, int(np.hypot(nx - x, ny - y) // 15))  # a pointermove every ~15 px
            for i in range(1, steps + 1):
                tx, ty = x + (nx - x) * i / steps, y + (ny - y) * i / steps
                px, py = x + (nx - x) * (i - 1) / steps, y + (ny - y) * (i - 1) / steps
                actions.move_by_offset(round(tx) - round(px), round(ty) - round(py))
            x, y = nx, ny
        actions.release().perform()


def press(driver: WebDriver, button: str) -> dict[str, Any]:
    """Click a button and wait for the answer: what the page shows in #result."""
    driver.find_element(By.ID, button).click()
    result = driver.find_element(By.ID, "result")
    wait(
        driver,
        lambda d: result.get_attribute("data-state") in ("done", "error"),
        "no answer on the page",
    )
    return {
        "state": result.get_attribute("data-state"),
        "top": driver.find_element(By.ID, "top-class").text,
        "version": result.get_attribute("data-version"),
        "latency_ms": float(driver.find_element(By.ID, "latency").get_attribute("data-ms") or 0),
        "error": driver.find_element(By.ID, "error").text,
        "bars": [
            (
                li.find_element(By.CLASS_NAME, "name").text,
                li.find_element(By.CLASS_NAME, "pct").text,
            )
            for li in driver.find_elements(By.CSS_SELECTOR, "#bars li")
        ],
        "sent": driver.execute_script("return window.lastInput"),
    }


def severe_logs(driver: Chrome) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


# -- the page itself, no browser ------------------------------------------------------------


def _server_top(client: httpx.Client, version: str, pixels: list[Any]) -> list[dict[str, Any]]:
    response = client.post(f"/predict/lenet?version={version}", json={"inputs": [pixels]})
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]  # type: ignore[no-any-return]


def test_drawn_one_is_answered_like_the_server_answers_its_pixels(
    browser: Chrome, server: BackgroundServer, client: httpx.Client
) -> None:
    severe_logs(browser)  # reading the log empties it
    open_page(browser, server.url + "/", "lenet")
    assert "image input [1, 28, 28]" in browser.find_element(By.ID, "model-info").text
    draw(browser, ONE)
    shown = press(browser, "predict")
    assert shown["state"] == "done", shown["error"]
    assert shown["version"] == "2"  # the latest unless picked
    assert shown["latency_ms"] > 0
    assert len(shown["bars"]) == 5 and shown["bars"][0][0] == shown["top"]

    sent = shown["sent"]
    pixels = np.asarray(sent["pixels"])
    assert sent["kind"] == "pixels" and pixels.shape == (28, 28)
    assert pixels.dtype.kind == "i" and pixels.min() >= 0 and pixels.max() > 200
    # a vertical stroke fills the middle columns of the (centred) 28 x 28 input
    assert pixels[4:24, 12:16].mean() > pixels[:, :8].mean() + 100

    answers = _server_top(client, "2", sent["pixels"])
    assert shown["top"] == answers[0]["class"]
    assert shown["bars"][0][1] == f"{100 * answers[0]['probability']:.1f}%"
    track, fill = (
        browser.find_element(By.CSS_SELECTOR, f"#bars li .{c}") for c in ("track", "fill")
    )
    assert fill.size["width"] == pytest.approx(
        answers[0]["probability"] * track.size["width"], abs=2
    )
    assert not severe_logs(browser)  # nothing blocked by the page's policy, no script errors

    browser.find_element(By.ID, "clear").click()
    assert browser.find_element(By.ID, "top-class").text == ""
    ink = browser.execute_script(
        "const c = document.getElementById('canvas');"
        "return c.getContext('2d').getImageData(0, 0, c.width, c.height).data"
        ".reduce((s, v, i) => s + (i % 4 === 3 ? 0 : v), 0);"
    )
    assert ink == 0


def test_a_finger_draws_too(
    browser: Chrome, server: BackgroundServer, client: httpx.Client
) -> None:
    open_page(browser, server.url + "/", "lenet")
    canvas = browser.find_element(By.ID, "canvas")
    finger = ActionBuilder(
        browser, mouse=PointerInput(interaction.POINTER_TOUCH, "finger"), duration=10
    )
    finger.pointer_action.move_to(canvas, 0, -90).pointer_down()
    for _ in range(12):
        finger.pointer_action.move_by(0, 15)
    finger.pointer_action.pointer_up()
    finger.perform()
    shown = press(browser, "predict")
    assert shown["state"] == "done", shown["error"]
    assert np.asarray(shown["sent"]["pixels"]).max() > 200
    assert shown["top"] == _server_top(client, "2", shown["sent"]["pixels"])[0]["class"]


def test_drawings_on_a_picked_version(
    browser: Chrome, server: BackgroundServer, client: httpx.Client
) -> None:
    open_page(browser, server.url + "/", "lenet", version=1)
    for strokes in (SEVEN, ZERO):
        browser.find_element(By.ID, "clear").click()
        draw(browser, strokes)
        shown = press(browser, "predict")
        assert shown["state"] == "done", shown["error"]
        assert shown["version"] == "1"
        assert shown["top"] == _server_top(client, "1", shown["sent"]["pixels"])[0]["class"]


@pytest.fixture(scope="module")
def mnist_server(mnist_bundle: Path) -> Iterator[BackgroundServer]:
    with BackgroundServer(create_app(mnist_bundle, ServeSettings(max_batch_size=1))) as running:
        yield running


def test_drawn_digits_are_recognised_by_an_mnist_model(
    browser: Chrome, mnist_server: BackgroundServer
) -> None:
    """Hand-drawn strokes, centred and fitted like MNIST's digits, read as the digits drawn."""
    open_page(browser, mnist_server.url + "/", "mnist")
    for digit, strokes in (("1", ONE), ("7", SEVEN), ("0", ZERO)):
        browser.find_element(By.ID, "clear").click()
        draw(browser, strokes)
        shown = press(browser, "predict")
        assert shown["state"] == "done", shown["error"]
        assert shown["top"] == digit, shown["bars"]


def test_uploads_and_server_errors_show_on_the_page(
    browser: Chrome,
    server: BackgroundServer,
    client: httpx.Client,
    sample_digits: tuple[np.ndarray, np.ndarray],
    tmp_path: Path,
) -> None:
    open_page(browser, server.url + "/", "lenet")
    image = tmp_path / "digit.png"
    Image.fromarray(sample_digits[0][0]).resize((84, 84)).save(image)
    browser.find_element(By.ID, "file").send_keys(str(image))  # the page predicts at once
    result = browser.find_element(By.ID, "result")
    wait(browser, lambda d: result.get_attribute("data-state") == "done", "no upload answer")
    assert browser.execute_script("return window.lastInput") == {
        "kind": "file",
        "name": "digit.png",
    }
    with image.open("rb") as f:
        answer = client.post("/predict/lenet", files={"file": ("digit.png", f, "image/png")})
    top = answer.json()["predictions"][0][0]["class"]
    assert browser.find_element(By.ID, "top-class").text == top

    notes = tmp_path / "notes.png"  # not an image, whatever its name says
    notes.write_bytes(b"these are not pixels")
    browser.find_element(By.ID, "file").send_keys(str(notes))
    wait(browser, lambda d: result.get_attribute("data-state") == "error", "no error shown")
    shown = browser.find_element(By.ID, "error").text
    assert shown.startswith("400: ") and "image" in shown
    assert browser.find_element(By.ID, "top-class").text == ""


def test_page_on_a_tokened_server(browser: Chrome, tokened: BackgroundServer) -> None:
    browser.get(tokened.url + "/")
    assert "missing or wrong bearer token" in browser.find_element(By.TAG_NAME, "body").text
    assert not browser.find_elements(By.ID, "canvas")

    open_page(browser, f"{tokened.url}/?token={TOKEN}", "lenet")
    draw(browser, ONE)
    shown = press(browser, "predict")
    assert shown["state"] == "done", shown["error"]
    headers = {"Authorization": f"Bearer {TOKEN}"}
    response = httpx.post(
        f"{tokened.url}/predict/lenet", json={"inputs": [shown["sent"]["pixels"]]}, headers=headers
    )
    assert shown["top"] == response.json()["predictions"][0][0]["class"]


def test_text_models_on_the_page(browser: Chrome, text_server: BackgroundServer) -> None:
    open_page(browser, text_server.url + "/", "gpt")
    assert not browser.find_element(By.ID, "image-panel").is_displayed()
    prompt = browser.find_element(By.ID, "prompt")
    prompt.clear()
    prompt.send_keys("ROMEO:")
    tokens = browser.find_element(By.ID, "max-tokens")
    tokens.clear()
    tokens.send_keys("12")
    shown = press(browser, "generate")
    assert shown["state"] == "done", shown["error"]
    assert shown["sent"] == {"kind": "prompt", "prompt": "ROMEO:", "max_tokens": 12,
                             "temperature": 0.8, "seed": 0}  # fmt: skip
    request = {k: v for k, v in shown["sent"].items() if k != "kind"}
    answer = httpx.post(f"{text_server.url}/generate/gpt", json=request, timeout=30)
    text = browser.execute_script("return document.getElementById('generated-text').textContent")
    assert text == answer.json()["text"] and len(text) > 0
    assert shown["latency_ms"] > 0

    open_page(browser, text_server.url + "/", "reviews")
    browser.find_element(By.ID, "input-text").send_keys("a fine warm film")
    shown = press(browser, "predict-input")
    assert shown["state"] == "done", shown["error"]
    answer = httpx.post(
        f"{text_server.url}/predict/reviews", json={"inputs": ["a fine warm film"]}, timeout=30
    )
    assert shown["top"] == answer.json()["predictions"][0][0]["class"]
    assert {name for name, _ in shown["bars"]} == {"pos", "neg"}


def test_a_regression_on_named_features(browser: Chrome, text_server: BackgroundServer) -> None:
    open_page(browser, text_server.url + "/", "diabetes")
    fields = browser.find_elements(By.CSS_SELECTOR, "#fields input")
    assert [f.get_attribute("name") for f in fields][:3] == ["age", "sex", "bmi"]
    bmi = fields[2]
    bmi.clear()
    bmi.send_keys("35.5")
    shown = press(browser, "predict-fields")
    assert shown["state"] == "done", shown["error"]
    sent = shown["sent"]
    assert sent["kind"] == "fields" and sent["input"]["bmi"] == 35.5 and len(sent["input"]) == 10
    answer = httpx.post(f"{text_server.url}/predict/diabetes", json={"inputs": [sent["input"]]})
    value = answer.json()["predictions"][0][0]["value"]
    assert shown["top"] == f"{value:.4g}".rstrip(".") or float(shown["top"]) == pytest.approx(
        value, rel=1e-3
    )
    cells = browser.find_elements(By.CSS_SELECTOR, "#values th")
    assert [c.text for c in cells] == ["progression"]
    bmi.clear()
    bmi.send_keys("lots")  # not a number: said on the page, nothing sent
    shown = press(browser, "predict-fields")
    assert shown["state"] == "error" and "bmi" in shown["error"]


@pytest.fixture(scope="module")
def movie_server(
    recommender_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BackgroundServer]:
    repository = tmp_path_factory.mktemp("page-movies")
    add_bundle(recommender_bundle, repository, "movies")
    with BackgroundServer(create_app(repository, ServeSettings(max_batch_size=1))) as running:
        yield running


def test_recommendations_for_picked_titles_and_users(
    browser: Chrome, movie_server: BackgroundServer
) -> None:
    severe_logs(browser)  # reading the log empties it: earlier tests' errors are theirs
    open_page(browser, movie_server.url + "/", "movies")
    item = browser.find_element(By.ID, "history-item")
    for typed in ("Amélie (1995)", "4"):  # a title picked from the list, or an id
        item.send_keys(typed)
        browser.find_element(By.ID, "history-add").click()
    shown = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#history-list li")]
    assert shown == ["Amélie (1995)", "Film 4 (1995)"]
    answer = press(browser, "recommend")
    assert answer["state"] == "done", answer["error"]
    assert answer["sent"] == {"kind": "history", "input": {"history": ["7", "4"]}}
    want = httpx.post(f"{movie_server.url}/predict/movies",
                      json={"inputs": [{"history": ["7", "4"]}], "top_k": 10}).json()  # fmt: skip
    titles = [a["title"] for a in want["predictions"][0]["items"]]
    listed = [li.text for li in browser.find_elements(By.CSS_SELECTOR, "#recommended li")]
    assert [text.split(" (")[0] for text in listed] == [t.split(" (")[0] for t in titles]
    assert answer["top"] == titles[0]

    browser.find_element(By.ID, "history-clear").click()
    browser.find_element(By.ID, "history-user").send_keys("nobody")
    answer = press(browser, "recommend")
    assert answer["state"] == "done" and "most popular" in answer["top"]
    assert severe_logs(browser) == []


@pytest.fixture(scope="module")
def vision_server(
    segmenter_bundle: Path, detector_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BackgroundServer]:
    repository = tmp_path_factory.mktemp("page-vision")
    add_bundle(segmenter_bundle, repository, "polyps")
    add_bundle(detector_bundle, repository, "cells")
    with BackgroundServer(create_app(repository, ServeSettings(max_batch_size=1))) as running:
        yield running


def answer_pixels(driver: WebDriver) -> tuple[int, int, float]:
    """The answer canvas's size and how much of it is coloured (drawn over the picture)."""
    return driver.execute_script(
        """const c = document.getElementById("answer-canvas");
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        let coloured = 0;
        for (let i = 0; i < d.length; i += 4) {
          const [r, g, b] = [d[i], d[i + 1], d[i + 2]];
          if (Math.max(r, g, b) - Math.min(r, g, b) > 40) coloured++;
        }
        return [c.width, c.height, coloured / (c.width * c.height)];"""
    )


@pytest.mark.parametrize("model", ["polyps", "cells"])
def test_masks_and_boxes_are_drawn_over_an_uploaded_image(
    browser: Chrome, vision_server: BackgroundServer, model: str, tmp_path: Path
) -> None:
    """An upload of another size is answered at its own size (as /predict answers the file)
    and drawn: the mask tinted, or the boxes outlined, over the grey picture."""
    severe_logs(browser)
    browser.get(vision_server.url + "/")
    Select(browser.find_element(By.ID, "model")).select_by_value(model)
    body = browser.find_element(By.TAG_NAME, "body")
    wait(browser, lambda d: body.get_attribute("data-ready") == "true", "page not ready")
    image = tmp_path / "scan.png"
    picture = np.full((90, 120, 3), 110, np.uint8)
    picture[20:50, 30:70] = 235  # a bright block on grey: a "polyp" or a "cell"
    Image.fromarray(picture).save(image)
    browser.find_element(By.ID, "file").send_keys(str(image))
    result = browser.find_element(By.ID, "result")
    wait(browser, lambda d: result.get_attribute("data-state") in ("done", "error"), "no answer")
    assert result.get_attribute("data-state") == "done", browser.find_element(By.ID, "error").text
    with image.open("rb") as f:
        files = {"file": ("scan.png", f, "image/png")}
        want = httpx.post(f"{vision_server.url}/predict/{model}", files=files).json()
    want = want["predictions"][0]
    assert want["size"] == [90, 120]
    width, height, coloured = answer_pixels(browser)
    assert (width, height) == (120, 90)  # at the image's own size
    seen = browser.execute_script(  # "what the model sees": the upload stretched, as served
        """const p = document.getElementById("preview");
        const d = p.getContext("2d").getImageData(0, 0, p.width, p.height).data;
        const at = (y, x) => d[4 * (y * p.width + x)];
        return [p.width, p.height, at(12, 13), at(28, 3)];"""
    )
    assert seen[:2] == [32, 32] and seen[2] > 200 and 90 < seen[3] < 130
    top = browser.find_element(By.ID, "top-class").text
    if model == "polyps":
        share = want["shares"]["foreground"]
        assert top.startswith(f"foreground {100 * share:.1f}%")
        assert (coloured > 0.01) == (share > 0.01)
    else:
        assert top.startswith(f"{len(want['detections'])} found")
        assert (coloured > 0) == bool(want["detections"])
    assert severe_logs(browser) == []


@pytest.fixture(scope="module")
def gan_server(
    generator_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BackgroundServer]:
    repository = tmp_path_factory.mktemp("page-gan")
    add_bundle(generator_bundle, repository, "gan")
    with BackgroundServer(create_app(repository, ServeSettings())) as running:
        yield running


def test_a_generator_makes_the_servers_images_of_a_seed_and_class(
    browser: Chrome, gan_server: BackgroundServer
) -> None:
    severe_logs(browser)
    open_page(browser, gan_server.url + "/", "gan")
    seed = browser.find_element(By.ID, "latent-seed")
    seed.clear()
    seed.send_keys("3")
    Select(browser.find_element(By.ID, "latent-class")).select_by_value("7")
    count = browser.find_element(By.ID, "latent-count")
    count.clear()
    count.send_keys("4")
    answer = press(browser, "imagine")
    assert answer["state"] == "done", answer["error"]
    assert answer["sent"] == {"kind": "latent", "seed": 3, "count": 4, "class": "7"}
    assert answer["top"] == "4 images of class 7"
    shown = [
        img.get_attribute("src") for img in browser.find_elements(By.CSS_SELECTOR, "#images img")
    ]
    want = httpx.post(f"{gan_server.url}/generate/gan",
                      json={"seed": 3, "count": 4, "class": "7"}).json()["images"]  # fmt: skip
    assert shown == [f"data:image/png;base64,{image['png']}" for image in want]
    assert severe_logs(browser) == []
