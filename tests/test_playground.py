"""The playground: its HTTP API through the framework's test client, and one end-to-end run
in real headless Chromium (skipped with a reason where no browser is installed)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time

import pytest
import torch

fastapi = pytest.importorskip("fastapi", reason="the playground needs the 'serve' extra (fastapi, uvicorn)")
from fastapi.testclient import TestClient  # noqa: E402

from advlab.serve import create_app  # noqa: E402
from advlab.serve.app import MAX_BODY_BYTES  # noqa: E402


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("runs")
    (d / "cnn-eval").mkdir()
    (d / "cnn-eval" / "report.html").write_text("<html><body>a report</body></html>")
    return d


@pytest.fixture(scope="module")
def client(seed_mlp, runs_dir):
    return TestClient(create_app(model=seed_mlp, runs_dir=runs_dir))


@pytest.fixture(scope="module")
def digit(client):
    """The first test digit the model classifies correctly and confidently (> 0.9)."""
    for s in client.get("/api/samples?count=60").json():
        p = client.post("/api/predict", json={"image": s["image"]}).json()
        if p["label"] == s["label"] and p["probabilities"][s["label"]] > 0.9:
            return s["image"], s["label"]
    raise AssertionError("the seed MLP classifies none of 60 test digits confidently")


def test_info_lists_registered_attacks_and_limits(client):
    info = client.get("/api/info").json()
    names = [a["name"] for a in info["attacks"]]
    assert "pgd" in names and "fgsm" in names
    assert info["classes"] == [str(i) for i in range(10)]
    assert info["eps_limits"]["linf"] == 1.0 and info["max_steps"] >= 100


def test_openapi_documents_the_api(client):
    spec = client.get("/openapi.json").json()
    assert {"/api/info", "/api/samples", "/api/predict", "/api/attack", "/api/reports"} <= set(spec["paths"])


def test_docs_page_is_self_contained(client):
    """FastAPI's Swagger page loads from a CDN and is blank offline; /docs is served whole."""
    import re

    page = client.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    html = page.text
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", html), "the API reference must not load anything from the network"
    for path in ("/api/info", "/api/samples", "/api/predict", "/api/attack", "/api/reports"):
        assert path in html
    assert "AttackRequest" in html and "eps" in html and "Perturbation budget" in html
    assert client.get("/redoc").status_code == 404


def test_predict_returns_probabilities_and_hidden_activations(client, digit):
    image, label = digit
    p = client.post("/api/predict", json={"image": image}).json()
    assert abs(sum(p["probabilities"]) - 1) < 1e-4
    assert p["label"] == label
    assert len(p["hidden"]) == 20  # the seed MLP's sigmoid layer
    nested = [image[r * 28 : (r + 1) * 28] for r in range(28)]
    assert client.post("/api/predict", json={"image": nested}).json()["label"] == label


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({"image": [0.5] * 783}, "784"),
        ({"image": [[0.5] * 28] * 27}, "28x28"),
        ({"image": [1.5] * 784}, "[0, 1]"),
        ({"image": [-0.1] + [0.0] * 783}, "[0, 1]"),
        ({"image": "not an image"}, "image"),
        ({"image": [0.0] * 784, "defense": "magic"}, "unknown defense"),
        ({}, "image"),
        ({"image": ["0.5"] + [0.0] * 783}, "finite numbers, found '0.5' (str)"),
        ({"image": [True] + [0.0] * 783}, "finite numbers, found True (bool)"),
        ({"image": [[0.0] * 27 + [False]] + [[0.0] * 28] * 27}, "found False (bool)"),
    ],
)
def test_malformed_images_get_422_with_a_message(client, body, fragment):
    r = client.post("/api/predict", json=body)
    assert r.status_code == 422
    assert fragment in r.json()["detail"]


def test_nan_pixels_are_refused(client):
    raw = '{"image": [NaN' + ", 0.0" * 783 + "]}"
    r = client.post("/api/predict", content=raw, headers={"content-type": "application/json"})
    assert r.status_code == 422 and "finite" in r.json()["detail"]


def test_attack_fools_the_network_and_respects_the_threat_model(client, digit):
    image, label = digit
    r = client.post("/api/attack", json={"image": image, "label": label, "attack": "pgd", "norm": "linf", "eps": 0.3, "steps": 40})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["success"] is True
    assert out["adversarial"]["label"] != label
    assert out["distances"]["linf"] <= 0.3 + 1e-5
    assert all(0.0 <= v <= 1.0 for v in out["adversarial_image"])
    assert out["forwards"] >= 1 and out["backwards"] >= 1


def test_targeted_attack_reaches_its_target(client, digit):
    image, label = digit
    target = (label + 3) % 10
    out = client.post(
        "/api/attack", json={"image": image, "label": label, "attack": "pgd", "eps": 0.3, "targeted": True, "target": target}
    ).json()
    assert out["success"] is True and out["adversarial"]["label"] == target


def test_defense_and_its_adaptive_attack(client, digit):
    image, label = digit
    naive = client.post("/api/attack", json={"image": image, "label": label, "attack": "pgd", "eps": 0.3, "defense": "binary-threshold", "adaptive": False}).json()
    adaptive = client.post("/api/attack", json={"image": image, "label": label, "attack": "pgd", "eps": 0.3, "defense": "binary-threshold", "adaptive": True}).json()
    # Thresholding zeroes the gradient: the naive attack learns nothing; BPDA sees through it.
    assert naive["success"] is False
    assert adaptive["success"] is True


@pytest.mark.parametrize(
    "change, status, fragment",
    [
        ({"attack": "no-such-attack"}, 422, "unknown attack"),
        ({"eps": 5.0}, 422, "above the limit"),
        ({"eps": -1}, 422, "eps"),
        ({"steps": 100000}, 422, "steps"),
        ({"steps": 0}, 422, "steps"),
        ({"norm": "l7"}, 422, "norm"),
        ({"targeted": True}, 422, "target"),
        ({"target": 12, "targeted": True}, 422, "target"),
        ({"eps": None}, 422, "needs an eps"),
    ],
)
def test_bad_attack_requests_get_4xx_never_500(client, digit, change, status, fragment):
    image, label = digit
    body = {"image": image, "label": label, "attack": "pgd", "norm": "linf", "eps": 0.3}
    body.update(change)
    r = client.post("/api/attack", json=body)
    assert r.status_code == status, r.text
    assert fragment in r.json()["detail"]


def test_oversized_bodies_are_refused_with_413(client):
    big = json.dumps({"image": [0.123456789] * 784, "pad": "x" * MAX_BODY_BYTES})
    r = client.post("/api/predict", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413

    def chunks():
        for _ in range(20):
            yield b"x" * (MAX_BODY_BYTES // 10)

    r = client.post("/api/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_time_limit_per_request(seed_mlp, digit):
    slow = TestClient(create_app(model=seed_mlp, time_limit=1e-4))
    image, label = digit
    r = slow.post("/api/attack", json={"image": image, "label": label, "attack": "pgd", "eps": 0.3, "steps": 500})
    assert r.status_code == 503 and "stopped at the time limit" in r.json()["detail"]


class SlowModel(torch.nn.Module):
    """The seed MLP, 4 ms slower per pass: 500 PGD steps take 2 s."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        time.sleep(0.004)
        return self.inner(x)


def test_a_slow_attack_is_stopped_and_the_requests_behind_it_get_their_turn(seed_mlp, digit):
    """50 concurrent slow attacks: each gets a result, a 503 after running its own full time
    limit, or an immediate 429; and a quick attack sent after them succeeds."""
    import asyncio

    import httpx

    from advlab.serve.app import MAX_WAITING

    limit = 0.4
    app = create_app(model=SlowModel(seed_mlp), time_limit=limit)
    image, label = digit
    slow = {"image": image, "label": label, "attack": "pgd", "eps": 0.3, "steps": 500}

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=60) as c:
            async def one(body):
                t0 = time.perf_counter()
                r = await c.post("/api/attack", json=body)
                return r, time.perf_counter() - t0

            out = await asyncio.gather(*(one(slow) for _ in range(50)))
            quick = await one({"image": image, "label": label, "attack": "fgsm", "eps": 0.3})
        return out, quick

    t0 = time.perf_counter()
    out, quick = asyncio.run(main())
    total = time.perf_counter() - t0
    codes = [r.status_code for r, _ in out]
    assert set(codes) <= {200, 429, 503}, codes
    assert codes.count(503) + codes.count(200) == 1 + MAX_WAITING, codes  # one running, the rest waited
    for r, _ in out:
        if r.status_code == 503:
            ran = float(r.json()["detail"].split("ran ")[1].split(" s")[0])
            assert ran >= limit, "a 503 for a time-out the request never had"
        if r.status_code == 429:
            assert r.headers["retry-after"] and "busy" in r.json()["detail"]
    # Stopped at the limit: 5 turns take about 5 limits, not 5 full 2-second attacks.
    assert total < (1 + MAX_WAITING) * (limit + 1.2), total
    assert quick[0].status_code == 200, quick[0].text


def test_reports_are_listed_and_served_without_traversal(client):
    assert client.get("/api/reports").json() == [{"name": "cnn-eval", "url": "/reports/cnn-eval"}]
    assert "a report" in client.get("/reports/cnn-eval").text
    assert client.get("/reports/..%2F..%2Fetc").status_code == 404
    assert client.get("/reports/nope").status_code == 404


def test_samples_bounds(client):
    assert len(client.get("/api/samples?count=5").json()) == 5
    assert client.get("/api/samples?count=0").status_code == 422
    assert client.get("/api/samples?offset=100000").status_code == 422


def test_serve_command_is_registered():
    from typer.testing import CliRunner

    from advlab.cli import app

    out = CliRunner().invoke(app, ["serve", "--help"])
    assert out.exit_code == 0 and "127.0.0.1" in out.output


# ----------------------------------------------------------------------------- browser
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium)")
def test_end_to_end_in_headless_chromium(seed_mlp, runs_dir, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright (Python) is not installed")
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(model=seed_mlp, runs_dir=runs_dir), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
            )
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_selector("body[data-ready='1']", timeout=20_000)
            # Draw a stroke on the pad: the page must predict something for a drawn digit.
            box = page.locator("#pad").bounding_box()
            page.mouse.move(box["x"] + 140, box["y"] + 40)
            page.mouse.down()
            page.mouse.move(box["x"] + 140, box["y"] + 240, steps=12)
            page.mouse.up()
            page.wait_for_function("document.getElementById('pred-text').dataset.label !== undefined", timeout=10_000)
            # Pick a test image and attack it.
            # Pick the first test image the model classifies correctly.
            thumbs = page.locator("#thumbs canvas")
            before = None
            for k in range(thumbs.count()):
                label = int(thumbs.nth(k).get_attribute("title").rsplit(" ", 1)[1])
                page.evaluate("document.getElementById('cap-orig').textContent = ''")
                thumbs.nth(k).click()
                page.wait_for_function(f"document.getElementById('cap-orig').textContent.includes('true {label}')")
                if int(page.locator("#pred-text").get_attribute("data-label")) == label:
                    before = label
                    break
            assert before is not None, "the model misclassifies every thumbnail"
            page.select_option("#attack", "pgd")
            page.fill("#eps", "0.3")
            page.click("#run")
            page.wait_for_selector("#verdict[data-success]", timeout=30_000)
            after = int(page.locator("#cap-adv").get_attribute("data-label"))
            assert page.locator("#verdict").get_attribute("data-success") == "true"
            assert after != before
            assert "Fooled" in page.locator("#verdict").inner_text()
            # The hidden layer is drawn beside the output probabilities (the seed report's figure
            # 5.1): 20 sigmoid units before and after, the ones the attack moved in red.
            assert page.locator("#hidden-before .unit").count() == 20
            assert page.locator("#hidden-after .unit").count() == 20
            assert page.locator("#hidden-after .unit.moved").count() >= 1
            assert "20 units" in page.locator("#hidden-title-after").inner_text()
            shot = os.environ.get("ADVLAB_SCREENSHOT") or str(tmp_path / "playground.png")
            page.screenshot(path=shot, full_page=True)
            # A minimal-norm attack gets no budget: it finds the smallest perturbation and fools.
            page.select_option("#attack", "cw-l2")
            assert page.input_value("#eps") == "" and page.input_value("#norm") == "l2"
            assert "minimal-norm" in page.locator("#eps-hint").inner_text()
            page.evaluate("document.getElementById('verdict').removeAttribute('data-success')")
            page.click("#run")
            page.wait_for_selector("#verdict[data-success]", timeout=30_000)
            assert page.locator("#verdict").get_attribute("data-success") == "true"
            page.select_option("#attack", "pgd")
            assert page.input_value("#eps") == "2" and page.locator("#eps-hint").inner_text() == ""  # the l2 budget kept from cw-l2
            # The API reference works offline: nothing is loaded from anywhere but the app.
            outside = []
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(f"http://127.0.0.1:{port}") else None)
            page.goto(f"http://127.0.0.1:{port}/docs")
            assert "API reference" in page.locator("h1").inner_text()
            assert "/api/attack" in page.content() and outside == []
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=10)
