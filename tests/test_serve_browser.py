"""`mnistlab serve` in a real headless Chromium (Selenium + Debian's chromedriver): the runs page,
a run gaining an epoch while its page is open, a confusion cell's images, digits drawn with the
mouse, and a comparison. With MNISTLAB_SCREENSHOTS=1 each page is saved to docs/screenshots/.

Skipped, with the reason, when Chromium, its driver or Selenium is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import SHARED_DATA

pytestmark = pytest.mark.slow
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
uvicorn = pytest.importorskip("uvicorn", reason="the `serve` extra (uvicorn) is not installed")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from mnistlab import load_experiment  # noqa: E402
from mnistlab.rundir.directory import read_history, write_history  # noqa: E402
from mnistlab.rundir.execute import run_experiment  # noqa: E402
from mnistlab.serve.app import create_app  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
# Without these, Chromium waits on network services a closed or sandboxed machine lacks.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                  "--window-size=1440,900", "--hide-scrollbars")


def _missing() -> str | None:
    if not (os.path.exists(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"Chromium not found ({CHROMIUM}); install Debian's `chromium` package"
    if not (os.path.exists(CHROMEDRIVER) and os.access(CHROMEDRIVER, os.X_OK)):
        return f"chromedriver not found ({CHROMEDRIVER}); install Debian's `chromium-driver`"
    if not (SHARED_DATA / "mnist").is_dir():
        return "../shared/data is not present (the tests train a small real MNIST network)"
    return None


if (_why := _missing()) is not None:
    pytest.skip(_why, allow_module_level=True)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, session_cache) -> dict[str, Path]:
    """A small real MNIST MLP that reads clearly drawn digits, a tinier one to compare it with,
    a tiny Fashion-MNIST run, and a run 'still training' (one epoch of three written)."""
    root = tmp_path_factory.mktemp("browser") / "runs"
    out = {}
    specs = {"digits": ["data.train_samples=12000", "model.hidden=[128]", "training.epochs=3",
                        "training.batch_size=64", "data.test_samples=2000"],
             "tiny": ["data.train_samples=600", "model.hidden=[16]", "training.epochs=3",
                      "data.test_samples=2000"],
             "fashion": ['data.dataset="fashion-mnist"', "data.train_samples=600",
                         "training.epochs=1", "data.test_samples=200"]}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MNISTLAB_CACHE", str(session_cache))
        for name, overrides in specs.items():
            exp = load_experiment("raw/template", [*overrides, "data.validation=0.1",
                                                   "output.plots=false", f'output.name="{name}"'])
            out[name] = run_experiment(exp, root, SHARED_DATA).run_dir
    live = root / "20990101-000000-training"
    live.mkdir()
    shutil.copy(out["tiny"] / "config.toml", live / "config.toml")
    full = read_history(out["tiny"] / "history.csv")
    write_history(live / "history.csv", {k: v[:1] for k, v in full.items()})
    (live / "status.json").write_text(json.dumps({"status": "running", "pid": os.getpid()}))
    broken = root / "20990101-000001-broken"  # a run whose status file is damaged
    broken.mkdir()
    (broken / "status.json").write_text("{not json")
    out["live"], out["broken"], out["root"] = live, broken, root
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(runs):
    """The app on 127.0.0.1 in a thread of this process (a real uvicorn server)."""
    port = _free_port()
    app = create_app(runs["root"], data_dir=SHARED_DATA,
                     allowed_hosts=["127.0.0.1", "localhost"])
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                        lifespan="off"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    profile = tempfile.mkdtemp(prefix="mnistlab-chromium-")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _wait(driver, condition, seconds: float = 15):
    return WebDriverWait(driver, seconds, poll_frequency=0.1).until(condition)


def _screenshot(driver, name: str) -> None:
    """docs/screenshots/<name>.png, only when MNISTLAB_SCREENSHOTS=1 (they are committed)."""
    if os.environ.get("MNISTLAB_SCREENSHOTS") != "1":
        return
    from PIL import Image

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    driver.save_screenshot(str(path))
    with Image.open(path) as img:  # small PNGs: a palette of 64 colours is plenty for a UI
        img.convert("RGB").quantize(64).save(path, optimize=True)


def _browser_errors(driver) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def test_the_runs_page_lists_every_run_and_filters_them(server, runs, browser):
    browser.get(server + "/")
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#runs tbody tr")) == 5)
    text = browser.find_element(By.ID, "runs").text
    assert runs["digits"].name in text and "running" in text
    assert "corrupt" in text and "status.json missing or unreadable" in text
    search = browser.find_element(By.ID, "filter-text")
    search.send_keys("digits")
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#runs tbody tr")) == 1)
    assert runs["digits"].name in browser.find_element(By.ID, "runs").text
    browser.execute_script("arguments[0].value = ''; arguments[0].dispatchEvent("
                           "new Event('input'))", search)
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#runs tbody tr")) == 5)
    browser.find_element(By.CSS_SELECTOR, "#filter-status option[value='running']").click()
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#runs tbody tr")) == 1)
    browser.find_element(By.CSS_SELECTOR, "#filter-status option[value='']").click()
    browser.find_element(By.CSS_SELECTOR, "#filter-dataset option[value='mnist']").click()
    browser.find_element(By.CSS_SELECTOR, "th[data-key='test_accuracy']").click()
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#runs tbody tr")) == 3)
    first = browser.find_element(By.CSS_SELECTOR, "#runs tbody tr").text
    assert runs["tiny"].name in first  # ascending: the weaker network first
    browser.find_element(By.CSS_SELECTOR, "#filter-dataset option[value='']").click()
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#runs tbody tr")) == 5)
    _screenshot(browser, "runs")
    assert _browser_errors(browser) == []


def test_an_open_run_page_draws_the_epoch_the_trainer_just_wrote(server, runs, browser):
    live = runs["live"]
    browser.get(f"{server}/run/{live.name}")
    curves = _wait(browser, lambda d: d.find_element(By.ID, "curves"))
    _wait(browser, lambda d: curves.get_attribute("data-epochs") == "1")
    _wait(browser, lambda d: "running" in d.find_element(By.ID, "progress").text)
    full = read_history(runs["tiny"] / "history.csv")
    write_history(live / "history.csv", {k: v[:2] for k, v in full.items()})  # the trainer's way
    _wait(browser, lambda d: d.find_element(By.ID, "curves").get_attribute("data-epochs") == "2")
    points = browser.find_elements(By.CSS_SELECTOR, "#chart-loss circle[data-epoch='2']")
    assert len(points) == 2  # training and validation loss at epoch 2
    assert "epoch 2 of" in browser.find_element(By.ID, "progress").text
    _screenshot(browser, "run-live")


def test_clicking_a_confusion_cell_shows_its_test_images(server, runs, browser):
    browser.get(f"{server}/run/{runs['digits'].name}")
    metrics = json.loads((runs["digits"] / "metrics.json").read_text())
    count = metrics["confusion"][4][9]
    cell = _wait(browser, lambda d: d.find_element(
        By.CSS_SELECTOR, "#confusion td[data-true='4'][data-predicted='9']"))
    cell.click()
    _wait(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#examples .example img")
          or d.find_elements(By.CSS_SELECTOR, "#examples h3"))
    shown = browser.find_elements(By.CSS_SELECTOR, "#examples .example")
    assert len(shown) == min(count, 24)
    assert f"{count} test images" in browser.find_element(By.CSS_SELECTOR, "#examples h3").text
    if shown:
        assert all(img.get_property("naturalWidth") == 28 for img in
                   browser.find_elements(By.CSS_SELECTOR, "#examples .example img"))
        assert "%" in shown[0].text
    browser.execute_script("document.getElementById('confusion').scrollIntoView(); "
                           "window.scrollBy(0, -50)")
    _screenshot(browser, "run")


# Strokes in a 280x280 canvas, as a person draws them: (x, y) points per stroke.
DIGITS = {
    1: [[(140, 40), (140, 240)]],
    0: [[(140, 40), (90, 70), (75, 140), (90, 210), (140, 240), (190, 210), (205, 140),
         (190, 70), (140, 40)]],
    7: [[(70, 50), (210, 50), (120, 245)]],
}


def _draw(driver, canvas, strokes) -> None:
    for stroke in strokes:
        chain = ActionChains(driver, duration=10)
        x0, y0 = stroke[0]
        chain.move_to_element_with_offset(canvas, x0 - 140, y0 - 140).click_and_hold()
        for (xa, ya), (xb, yb) in zip(stroke, stroke[1:], strict=False):
            steps = max(1, int(max(abs(xb - xa), abs(yb - ya)) / 12))
            for k in range(1, steps + 1):
                chain.move_by_offset(round(xa + (xb - xa) * k / steps) - round(
                    xa + (xb - xa) * (k - 1) / steps), round(ya + (yb - ya) * k / steps) - round(
                    ya + (yb - ya) * (k - 1) / steps))
        chain.release().perform()


@pytest.mark.parametrize("digit", sorted(DIGITS))
def test_a_digit_drawn_with_the_mouse_is_read_as_that_digit(server, runs, browser, digit):
    browser.get(f"{server}/draw?run={runs['digits'].name}")
    canvas = _wait(browser, lambda d: d.find_element(By.ID, "canvas"))
    _wait(browser, lambda d: d.find_element(By.ID, "run").get_attribute("value")
          == runs["digits"].name)
    _draw(browser, canvas, DIGITS[digit])
    predicted = _wait(browser, lambda d: d.find_element(By.ID, "prediction"))
    assert predicted.get_attribute("data-class") == str(digit), browser.find_element(
        By.ID, "top3").text
    assert len(browser.find_elements(By.CSS_SELECTOR, "#top3 li")) == 3
    assert browser.find_element(By.ID, "frame").get_property("naturalWidth") == 28
    if digit == 7:
        _screenshot(browser, "draw")


def test_two_runs_compared_overlay_their_curves_and_give_the_verdicts(server, runs, browser):
    names = [runs["digits"].name, runs["tiny"].name]
    browser.get(f"{server}/compare")
    _wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, ".runpick input")) == 3)
    for box in browser.find_elements(By.CSS_SELECTOR, ".runpick input"):
        if box.get_attribute("value") in names:
            box.click()
    browser.find_element(By.ID, "compare").click()
    table = _wait(browser, lambda d: d.find_element(By.ID, "comparison"))
    assert len(table.find_elements(By.CSS_SELECTOR, "tr")) == 3  # header + 2 configurations
    lines = browser.find_elements(By.CSS_SELECTOR, "#chart-val-loss polyline")
    assert sorted(line.get_attribute("data-series") for line in lines) == sorted(names)
    verdicts = browser.find_element(By.ID, "verdicts").text
    assert "McNemar" in verdicts and "not testable: 1 seed(s)" in verdicts
    _screenshot(browser, "compare")


def test_a_fashion_run_takes_an_uploaded_photo_instead_of_a_drawing(server, runs, browser,
                                                                  tmp_path):
    from PIL import Image

    from mnistlab.data.load import load_dataset
    from mnistlab.predict.predictor import predict_files

    ds = load_dataset("fashion-mnist", SHARED_DATA)
    photo = tmp_path / "garment.png"  # dark garment on white paper, as a photo would be
    Image.fromarray(255 - ds.test_images[0]).resize((168, 168)).save(photo)
    (want,) = predict_files(runs["fashion"], [photo], top=3)
    browser.get(f"{server}/draw?run={runs['fashion'].name}")
    upload = _wait(browser, lambda d: d.find_element(By.ID, "upload"))
    _wait(browser, lambda d: upload.is_displayed())
    assert not browser.find_element(By.ID, "canvas").is_displayed()
    upload.send_keys(str(photo))
    predicted = _wait(browser, lambda d: d.find_element(By.ID, "prediction"))
    assert predicted.get_attribute("data-class") == str(want.prediction)
    assert predicted.text == want.top[0][1]
