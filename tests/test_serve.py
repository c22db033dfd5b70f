"""`mnistlab serve`'s API through Starlette's TestClient: listings, run pages, confusion-cell
images, live events, drawing, comparing, reports, and the ways a URL must not reach a file."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA

pytest.importorskip("starlette", reason="the `serve` extra (starlette) is not installed")
pytest.importorskip("httpx", reason="Starlette's TestClient needs httpx")
from PIL import Image  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from mnistlab import load_experiment  # noqa: E402
from mnistlab.commands.main import main  # noqa: E402
from mnistlab.rundir.directory import load_run, read_history, write_history  # noqa: E402
from mnistlab.rundir.execute import run_experiment  # noqa: E402
from mnistlab.serve.app import create_app  # noqa: E402

TINY = ["data.train_samples=300", "data.test_samples=100", "data.validation=0.2",
        "training.epochs=2", "output.plots=false"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, session_cache) -> dict[str, Path]:
    """Two small real MNIST runs, a damaged one, a report folder and, outside the runs folder,
    a run that a symbolic link inside it points to."""
    if not (SHARED_DATA / "mnist").is_dir():
        pytest.skip("../shared/data is not present")
    base = tmp_path_factory.mktemp("serve")
    root = base / "runs"
    out: dict[str, Path] = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MNISTLAB_CACHE", str(session_cache))
        for name, hidden in (("small", 16), ("wide", 64)):
            exp = load_experiment("raw/template", [*TINY, f"model.hidden=[{hidden}]",
                                                   f'output.name="{name}"'])
            out[name] = run_experiment(exp, root, SHARED_DATA).run_dir
    broken = root / "20990101-000000-broken"
    broken.mkdir()
    (broken / "status.json").write_text("{not json")
    out["broken"] = broken
    outside = base / "secret-run"
    shutil.copytree(out["small"], outside)
    (root / "20990101-000001-link-out").symlink_to(outside, target_is_directory=True)
    report = base / "report"
    report.mkdir()
    (report / "report.html").write_text("<html><body><h1>suite report</h1></body></html>")
    out["report"] = report
    out["root"] = root
    return out


@pytest.fixture
def client(runs) -> TestClient:
    app = create_app(runs["root"], reports=[runs["report"]], data_dir=SHARED_DATA)
    return TestClient(app)


def test_the_runs_listing_holds_every_run_and_says_what_is_wrong_with_damaged_ones(runs, client):
    data = client.get("/api/runs").json()
    rows = {r["name"]: r for r in data["runs"]}
    assert set(rows) == {runs["small"].name, runs["wide"].name, runs["broken"].name}
    small = rows[runs["small"].name]
    metrics = json.loads((runs["small"] / "metrics.json").read_text())
    assert small["test_accuracy"] == metrics["test_accuracy"]
    assert small["val_accuracy"] == read_history(runs["small"] / "history.csv")["val_accuracy"][-1]
    assert (small["status"], small["dataset"], small["experiment"]) == ("complete", "mnist", "raw")
    assert (small["epochs_done"], small["epochs"], small["problems"]) == (2, 2, [])
    broken = rows[runs["broken"].name]
    assert broken["status"] == "corrupt"
    assert broken["problems"] == load_run(runs["broken"]).problems != []


def test_a_run_page_holds_its_curves_summary_scores_and_confusion(runs, client):
    data = client.get(f"/api/runs/{runs['wide'].name}").json()
    history = read_history(runs["wide"] / "history.csv")
    assert data["history"] == history
    metrics = json.loads((runs["wide"] / "metrics.json").read_text())
    assert data["metrics"]["confusion"] == metrics["confusion"]
    assert data["metrics"]["per_class"] == metrics["per_class"]
    assert data["summary"]["params"] == metrics["params"] == 784 * 64 + 64 + 64 * 10 + 10
    assert [layer["kind"] for layer in data["summary"]["layers"]][-1] == "Dense"
    assert data["summary_text"] == (runs["wide"] / "summary.txt").read_text()
    assert data["progress"] == {**data["progress"], "status": "complete", "epochs_done": 2,
                                "epochs": 2, "eta_seconds": None}
    assert data["can_predict"] and data["has_predictions"]


def test_a_confusion_cell_shows_its_test_images_most_confident_first(runs, client):
    run = runs["small"]
    confusion = np.array(json.loads((run / "metrics.json").read_text())["confusion"])
    np.fill_diagonal(confusion, 0)
    t, p = np.unravel_index(int(np.argmax(confusion)), confusion.shape)
    data = client.get(f"/api/runs/{run.name}/examples?true={t}&predicted={p}").json()
    assert data["count"] == confusion[t, p] == len(data["images"])
    with np.load(run / "predictions.npz") as pred:
        probs, index = pred["probabilities"], pred["test_index"]
    from mnistlab.data.load import load_dataset

    test_images = load_dataset("mnist", SHARED_DATA).test_images
    shown = [int(np.flatnonzero(index == im["test_index"])[0]) for im in data["images"]]
    assert [probs[i, p] for i in shown] == sorted((probs[i, p] for i in shown), reverse=True)
    for im, i in zip(data["images"], shown, strict=True):
        png = base64.b64decode(im["image"].split(",", 1)[1])
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))),
                                      test_images[im["test_index"]])
        assert im["top"][0]["probability"] == pytest.approx(float(probs[i].max()))
    assert client.get(f"/api/runs/{run.name}/examples?true=3&predicted=10").status_code == 422
    assert client.get(f"/api/runs/{run.name}/examples?true=x&predicted=1").status_code == 400


@pytest.mark.parametrize("name", ["..", "%2E%2E", "..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd",
                                  "runs%2F..%2Fsecret-run", "20990101-000001-link-out",
                                  "secret-run", "%00", "%2E"])
def test_a_url_can_only_name_runs_of_the_listing(runs, client, name):
    for path in (f"/api/runs/{name}", f"/api/runs/{name}/examples?true=0&predicted=0",
                 f"/api/runs/{name}/events"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "secret" not in response.text.replace(name, "").lower() or "no run" in response.text
    bad = client.post("/api/predict", json={"run": "20990101-000001-link-out", "image": _png_url(
        np.zeros((28, 28), np.uint8))})
    assert bad.status_code == 404


def test_run_files_that_link_out_of_the_runs_folder_are_not_read(runs, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(runs["small"], root / runs["small"].name)
    secret = tmp_path / "secret.npz"
    shutil.copy(runs["wide"] / "predictions.npz", secret)
    (root / runs["small"].name / "predictions.npz").unlink()
    (root / runs["small"].name / "predictions.npz").symlink_to(secret)
    client = TestClient(create_app(root, data_dir=SHARED_DATA))
    response = client.get(f"/api/runs/{runs['small'].name}/examples?true=0&predicted=0")
    assert response.status_code == 404 and "missing" in response.json()["error"]


def test_pages_and_scripts_are_served_from_the_package_with_a_strict_policy(client):
    for path in ("/", "/compare", "/draw", "/run/anything"):
        response = client.get(path)
        assert response.status_code == 200 and "<main id=\"app\">" in response.text
        assert "script-src 'self'" in response.headers["content-security-policy"]
    static = Path(__file__).resolve().parents[1] / "src" / "mnistlab" / "serve" / "static"
    for file in static.iterdir():
        assert client.get(f"/static/{file.name}").status_code == 200
        text = file.read_text().replace("http://www.w3.org/2000/svg", "")  # a name, not a fetch
        assert "http://" not in text and "https://" not in text and "//cdn" not in text
    assert client.get("/static/..%2F..%2Fapi.py").status_code == 404


def test_only_loopback_host_names_are_answered_when_serving_locally(runs):
    app = create_app(runs["root"], allowed_hosts=["127.0.0.1", "localhost"])
    local = TestClient(app, base_url="http://127.0.0.1:8765")
    assert local.get("/api/runs").status_code == 200
    rebound = TestClient(app, base_url="http://attacker.example:8765")
    assert rebound.get("/api/runs").status_code == 400


def test_the_api_writes_nothing_into_the_runs_folder(runs, client):
    def snapshot():
        return sorted((str(p), p.stat().st_mtime_ns) for p in runs["root"].rglob("*")
                      if not p.is_symlink())

    before = snapshot()
    client.get("/api/runs")
    client.get(f"/api/runs/{runs['small'].name}")
    client.get(f"/api/runs/{runs['small'].name}/examples?true=1&predicted=1")
    client.post("/api/predict", json={"run": runs["small"].name,
                                      "image": _png_url(_mnist_digit(0)[0])})
    client.get(f"/api/compare?run={runs['small'].name}&run={runs['wide'].name}")
    assert snapshot() == before


def _png_url(image: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _mnist_digit(i: int) -> tuple[np.ndarray, int]:
    from mnistlab.data.load import load_dataset

    ds = load_dataset("mnist", SHARED_DATA)
    return ds.test_images[i], int(ds.test_labels[i])


def test_a_drawing_is_predicted_exactly_as_predict_predicts_its_file(runs, client, tmp_path):
    from mnistlab.predict.predictor import predict_files

    for i in range(3):
        image, _ = _mnist_digit(i)
        # a drawing: dark ink on white paper, larger than 28x28, as the canvas sends it
        drawing = 255 - np.kron(image, np.ones((6, 6), np.uint8))
        url = _png_url(drawing)
        got = client.post("/api/predict", json={"run": runs["wide"].name, "image": url}).json()
        file = tmp_path / f"{i}.png"
        file.write_bytes(base64.b64decode(url.split(",", 1)[1]))
        (want,) = predict_files(runs["wide"], [file], top=3)
        assert [(t["class"], t["probability"]) for t in got["top"]] == [
            (c, pytest.approx(p, abs=1e-12)) for c, _, p in want.top]
        frame = np.asarray(Image.open(io.BytesIO(base64.b64decode(got["frame"].split(",")[1]))))
        np.testing.assert_array_equal(frame, want.frame)


def test_the_draw_endpoint_refuses_what_predict_refuses_and_oversized_bodies(runs, client):
    name = runs["small"].name
    blank = client.post("/api/predict", json={"run": name,
                                              "image": _png_url(np.full((280, 280), 255,
                                                                        np.uint8))})
    assert blank.status_code == 422 and "no digit found" in blank.json()["error"]
    truncated = _png_url(np.zeros((50, 50), np.uint8))[:-40]
    assert client.post("/api/predict", json={"run": name, "image": truncated}).status_code in (
        400, 422)
    assert client.post("/api/predict", json={"run": name, "image": "data:text/html;base64,PGI+"}
                       ).status_code == 400
    assert client.post("/api/predict", content=b"not json").status_code == 400
    from mnistlab.serve.draw import MAX_BODY_BYTES

    huge = client.post("/api/predict", content=b"x" * (MAX_BODY_BYTES + 1))
    assert huge.status_code == 413
    not_png = "data:image/png;base64," + base64.b64encode(b"GIF89a not really").decode()
    response = client.post("/api/predict", json={"run": name, "image": not_png})
    assert response.status_code == 422 and "not a PNG" in response.json()["error"]
    assert client.post("/api/predict", json={"run": runs["broken"].name,
                                             "image": _png_url(_mnist_digit(0)[0])}
                       ).status_code == 422


def test_compare_gives_mnistlab_compares_table_and_verdicts(runs, client):
    from mnistlab.report.compare import compare
    from mnistlab.report.verdicts import experiment_tests

    a, b = runs["small"], runs["wide"]
    data = client.get(f"/api/compare?run={a.name}&run={b.name}").json()
    comp = compare([a, b])
    want = comp.rows()
    assert [r["configuration"] for r in data["configurations"]] == [r["configuration"]
                                                                    for r in want]
    assert [r["test_accuracy"]["mean"] for r in data["configurations"]] == [
        r["test_accuracy"].mean for r in want]
    assert [v["verdict"] for v in data["verdicts"]] == [
        v.verdict for m in ("test_accuracy", "f1_macro") for v in experiment_tests(comp, m)]
    assert data["curves"][a.name]["val_loss"] == read_history(a / "history.csv")["val_loss"]
    skipped = client.get(f"/api/compare?run={a.name}&run={runs['broken'].name}").json()
    assert [s["run"] for s in skipped["skipped"]] == [runs["broken"].name]
    assert client.get("/api/compare?run=..%2Fsecret-run").status_code == 404
    assert client.get("/api/compare").status_code == 400


def test_a_suite_report_opens_sandboxed_by_its_number_only(runs, client):
    listed = client.get("/api/reports").json()["reports"]
    assert [r["url"] for r in listed] == ["/reports/0"]
    page = client.get("/reports/0")
    assert "suite report" in page.text and "sandbox" in page.headers["content-security-policy"]
    for bad in ("/reports/1", "/reports/-1", "/reports/..%2F..%2Fetc%2Fpasswd"):
        assert client.get(bad).status_code == 404


def _running_copy(run: Path, root: Path, epochs: int) -> Path:
    """A run 'still training': the first `epochs` rows of `run`'s history, status running."""
    target = root / "20990101-000002-live"
    target.mkdir(parents=True)
    shutil.copy(run / "config.toml", target / "config.toml")
    full = read_history(run / "history.csv")
    write_history(target / "history.csv", {k: v[:epochs] for k, v in full.items()})
    (target / "status.json").write_text(json.dumps({"status": "running", "pid": os.getpid()}))
    return target


def _events(text: str) -> list[tuple[str, dict]]:
    out = []
    for block in text.split("\n\n"):
        lines = dict(line.split(": ", 1) for line in block.splitlines() if ": " in line
                     and not line.startswith(":"))
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out


def test_live_events_send_each_new_epoch_once_then_end(runs, tmp_path):
    root = tmp_path / "runs"
    live = _running_copy(runs["small"], root, 1)
    full = read_history(runs["small"] / "history.csv")
    client = TestClient(create_app(root))

    def trainer():  # the trainer's own writer: a second epoch, then the run ends
        time.sleep(0.8)
        write_history(live / "history.csv", full)
        time.sleep(0.8)
        (live / "status.json").write_text(json.dumps({"status": "failed", "error": "stopped"}))

    thread = threading.Thread(target=trainer)
    thread.start()
    try:
        text = client.get(f"/api/runs/{live.name}/events", timeout=20).text
    finally:
        thread.join()
    events = _events(text)
    epochs = [data for kind, data in events if kind == "epoch"]
    assert [e["epoch"] for e in epochs] == [1.0, 2.0]
    assert [e["val_loss"] for e in epochs] == full["val_loss"]
    statuses = [data for kind, data in events if kind == "status"]
    assert statuses[0]["status"] == "running" and statuses[-1]["status"] == "failed"
    assert any(s["epochs_done"] == 2 and s["eta_seconds"] == 0.0 for s in statuses) or \
        statuses[-1]["epochs_done"] == 2
    assert events[-1][0] == "end"
    after = _events(client.get(f"/api/runs/{live.name}/events?after=1").text)
    assert [d["epoch"] for k, d in after if k == "epoch"] == [2.0]


def test_the_history_follower_reads_only_the_bytes_it_has_not_read(tmp_path):
    from mnistlab.serve.live import HistoryFollower

    path = tmp_path / "history.csv"
    rows = {"loss": [1.0, 0.5, 0.25], "val_loss": [1.1, 0.6, 0.3]}
    write_history(path, {k: v[:1] for k, v in rows.items()})
    follower = HistoryFollower(path)
    assert follower.poll() == (False, [{"epoch": 1.0, "loss": 1.0, "val_loss": 1.1}])
    assert follower.poll() == (False, [])  # unchanged: nothing read
    offset = follower.offset
    write_history(path, {k: v[:3] for k, v in rows.items()})
    assert follower.poll() == (False, [{"epoch": 2.0, "loss": 0.5, "val_loss": 0.6},
                                       {"epoch": 3.0, "loss": 0.25, "val_loss": 0.3}])
    assert follower.offset == path.stat().st_size > offset
    with open(path, "a") as fh:  # a row still being written is left for the next poll
        fh.write("4,0.1")
    assert follower.poll() == (False, [])
    write_history(path, {k: v[:1] for k, v in rows.items()})  # a resume from an earlier epoch
    assert follower.poll() == (True, [{"epoch": 1.0, "loss": 1.0, "val_loss": 1.1}])


def test_the_serve_command_prints_its_url_and_warns_when_exposed(runs, monkeypatch, capsys):
    import socket

    import uvicorn

    started = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: started.append(
        (self.config, sockets[0].getsockname())))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert main(["serve", "--runs-dir", str(runs["root"]), "--port", str(port)]) == 0
    out = capsys.readouterr()
    assert f"http://127.0.0.1:{port}/" in out.out and "warning" not in out.err
    assert started[-1][1] == ("127.0.0.1", port)
    assert main(["serve", "--runs-dir", str(runs["root"]), "--host", "0.0.0.0",
                 "--port", str(port)]) == 0
    assert "anyone who can reach this machine" in capsys.readouterr().err
    assert main(["serve", "--port", "70000"]) == 2
    (runs["root"].parent / "file").write_text("")
    assert main(["serve", "--runs-dir", str(runs["root"].parent / "file")]) == 2
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        assert main(["serve", "--runs-dir", str(runs["root"]), "--port", str(port)]) == 2
        assert "cannot listen there" in capsys.readouterr().err


def test_cached_answers_follow_the_run_files(runs, tmp_path, monkeypatch):
    from mnistlab.serve import index

    monkeypatch.setattr(index, "LISTING_SECONDS", 0.0)
    root = tmp_path / "runs"
    run = shutil.copytree(runs["small"], root / runs["small"].name)
    client = TestClient(create_app(root))
    first = client.get(f"/api/runs/{run.name}").json()["test_accuracy"]
    assert client.get("/api/runs").json()["runs"][0]["test_accuracy"] == first
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["test_accuracy"] = 0.125
    (run / "metrics.json").write_text(json.dumps(metrics))
    assert client.get(f"/api/runs/{run.name}").json()["test_accuracy"] == 0.125
    assert client.get("/api/runs").json()["runs"][0]["test_accuracy"] == 0.125


def test_clients_asking_at_once_compute_an_answer_once():
    from mnistlab.serve.cache import AnswerCache

    cache, made = AnswerCache(), []

    def make():
        made.append(1)
        time.sleep(0.2)
        return 200, {"value": float("nan")}

    answers = []
    threads = [threading.Thread(target=lambda: answers.append(cache.get("k", make)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and answers == [(200, b'{"value":null}')] * 8
    assert cache.get(None, make) == (200, b'{"value":null}') and len(made) == 2


@pytest.mark.parametrize(("run_name", "group"), [
    ("lab-main-raw-final-s0", "suite lab-main"), ("lab-main-raw-final-s12", "suite lab-main"),
    ("grid-p003-s1", "sweep grid"), ("raw-final", ""), ("lab-main-raw-nothing-s0", "")])
def test_runs_are_grouped_by_the_suite_or_sweep_that_named_them(run_name, group):
    from mnistlab.experiments.suite import load_suite
    from mnistlab.serve.index import _group_of

    assert "raw/final" in load_suite("lab-main", strict=False).presets
    assert _group_of(run_name) == group


def test_a_missing_runs_folder_is_said_on_the_page_not_raised(tmp_path):
    client = TestClient(create_app(tmp_path / "nowhere"))
    data = client.get("/api/runs").json()
    assert data["runs"] == [] and "no such runs folder" in data["error"]
    assert client.get("/api/runs/x").status_code == 404
