"""The playground's HTTP API (FastAPI) and its single page.

Endpoints (a self-contained reference at ``/docs``, OpenAPI at ``/openapi.json``):

- ``GET /api/info``: model, classes, attacks, norms and limits
- ``GET /api/samples``: test images to pick from
- ``POST /api/predict``: prediction and activations for an image
- ``POST /api/attack``: run an attack on an image
- ``GET /api/reports``: evaluation reports found in the runs folder, served under ``/reports/NAME``
"""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from torch import nn

from advlab.serve.schemas import (
    DEFENSES,
    EPS_LIMITS,
    IMAGE_SIDE,
    MAX_STEPS,
    AttackRequest,
    AttackResponse,
    Prediction,
    PredictRequest,
)
from advlab.victim import AttackTimeout, time_limit

__all__ = ["create_app", "MAX_BODY_BYTES", "MAX_WAITING"]

STATIC = Path(__file__).parent / "static"
MAX_BODY_BYTES = 64 * 1024
# Attacks run one at a time (one CPU); this many more may wait for their turn, and a request
# beyond them is answered 429 at once instead of queueing into a time-out.
MAX_WAITING = 4


class BodyLimit:
    """ASGI middleware: refuse request bodies over ``limit`` bytes with 413, whether or not
    the client sent a Content-Length."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            await _send_json(send, 413, {"detail": f"request body too large: {int(length)} bytes (limit {self.limit})"})
            return
        # Read the body up to the limit before the app sees it, so an oversized chunked body
        # is refused with 413 too (FastAPI would turn an error while parsing into a 400).
        chunks: list[bytes] = []
        seen = 0
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            body = message.get("body", b"")
            seen += len(body)
            if seen > self.limit:
                await _send_json(send, 413, {"detail": f"request body too large (limit {self.limit} bytes)"})
                return
            chunks.append(body)
            more = message.get("more_body", False)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _send_json(send: Any, status: int, body: dict) -> None:
    import json

    data = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
    await send({"type": "http.response.body", "body": data})


class Playground:
    """The state behind the app: one model, the test images, a lock for the CPU."""

    def __init__(self, model: nn.Module, model_name: str, runs_dir: Path, time_limit: float) -> None:
        from advlab.attacks.cascade import playground_attacks
        from advlab.data import load_data

        self.model = model.eval()
        self.model_name = model_name
        self.runs_dir = runs_dir
        self.time_limit = time_limit
        data = load_data("mnist-sample")
        self.x_test, self.y_test, self.classes = data.x_test, data.y_test, data.classes
        # the attacks that declare a playground role (per-image attacks that finish in well
        # under a second on one MNIST digit), in their declared order
        self.attacks = playground_attacks()
        self._turn: tuple[Any, asyncio.Lock] | None = None
        self.waiting = 0

    def turn(self) -> asyncio.Lock:
        """One attack at a time (the time limit counts from a request's turn, not its arrival);
        the lock belongs to the running event loop (a test client may start another)."""
        loop = asyncio.get_running_loop()
        if self._turn is None or self._turn[0] is not loop:
            self._turn = (loop, asyncio.Lock())
        return self._turn[1]

    def defended(self, defense: str) -> nn.Module:
        if defense == "none":
            return self.model
        from advlab.defenses import BinaryThreshold, Defended

        return Defended(self.model, BinaryThreshold(0.5))

    def predict(self, image: torch.Tensor, defense: str) -> Prediction:
        model = self.defended(defense)
        with torch.no_grad():
            logits = model(image)
            probs = torch.softmax(logits, dim=1)[0]
            hidden = None
            if hasattr(self.model, "activations"):
                seen = self.defended(defense).transform(image) if defense != "none" else image  # type: ignore[union-attr,operator]
                hidden = self.model.activations(seen)["hidden"][0].tolist()  # type: ignore[operator]
        return Prediction(label=int(probs.argmax()), probabilities=[round(float(p), 6) for p in probs], hidden=hidden)

    def attack(self, req: AttackRequest) -> AttackResponse:
        from advlab.threat import ThreatModel

        if req.attack not in self.attacks:
            raise HTTPException(422, f"unknown attack {req.attack!r}; choose one of {', '.join(self.attacks)}")
        cls = self.attacks[req.attack]
        if req.norm not in cls.norms:
            raise HTTPException(422, f"attack {req.attack!r} supports norms {', '.join(cls.norms)}, not {req.norm}")
        if req.eps is not None and req.eps > EPS_LIMITS[req.norm]:
            raise HTTPException(422, f"eps {req.eps} is above the limit {EPS_LIMITS[req.norm]} for {req.norm}")
        if req.eps is None and not cls.minimal:
            raise HTTPException(422, f"attack {req.attack!r} needs an eps (it is not a minimal-norm attack)")
        if req.targeted and req.target is None:
            raise HTTPException(422, "a targeted attack needs a target class")
        image = torch.tensor(req.image, dtype=torch.float32).reshape(1, 1, IMAGE_SIDE, IMAGE_SIDE)
        before = self.predict(image, req.defense)
        label = before.label if req.label is None else req.label
        if req.targeted and req.target == label:
            raise HTTPException(422, f"the target {req.target} equals the label {label}; choose another class")
        params: dict[str, Any] = {}
        if req.steps is not None:
            import dataclasses

            if "steps" in {f.name for f in dataclasses.fields(cls)}:
                params["steps"] = req.steps
        try:
            threat = ThreatModel(req.norm, eps=req.eps, targeted=req.targeted)
            attack = cls(**params)
            # The defended model declares its adaptive version (BPDA); the attack uses it
            # unless the user asks for the naive attack.
            model = self.defended(req.defense)
            targets = torch.tensor([req.target]) if req.targeted else None
            start = time.perf_counter()
            with time_limit(self.time_limit):
                result = attack(model, image, torch.tensor([label]), threat, targets=targets, adaptive=req.adaptive)
            seconds = time.perf_counter() - start
        except HTTPException:
            raise
        except AttackTimeout:
            raise HTTPException(
                503, f"the attack ran {time.perf_counter() - start:.1f} s and was stopped at the time limit of "
                f"{self.time_limit:g} s; use fewer steps"
            ) from None
        except (ValueError, TypeError, KeyError) as exc:
            raise HTTPException(422, str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc)) from None
        x_adv = result.x_adv
        after = self.predict(x_adv, req.defense)
        goal_reached = after.label == req.target if req.targeted else after.label != label
        delta = (x_adv - image).reshape(-1)
        return AttackResponse(
            attack=req.attack,
            threat=threat.describe(),
            success=bool(goal_reached),
            original=before,
            adversarial=after,
            adversarial_image=[round(float(v), 5) for v in x_adv.reshape(-1)],
            perturbation=[round(float(v), 5) for v in delta],
            distances={k: float(v[0]) for k, v in result.norms.items()},
            seconds=seconds,
            forwards=int(result.forwards[0]),
            backwards=int(result.backwards[0]),
        )

    def reports(self) -> list[dict[str, str]]:
        if not self.runs_dir.is_dir():
            return []
        found = sorted(p.parent.name for p in self.runs_dir.glob("*/report.html"))
        return [{"name": n, "url": f"/reports/{n}"} for n in found]


def create_app(
    model: nn.Module | None = None,
    model_dir: str | Path | None = None,
    runs_dir: str | Path = "runs",
    time_limit: float = 20.0,
) -> Any:
    """The playground ASGI app.  By default it opens on the seed report's MLP trained on the
    embedded MNIST sample (trained once, then cached)."""
    from advlab.models import load_model, trained_model

    if model is None:
        if model_dir is not None:
            model = load_model(model_dir)
            name = str(getattr(model, "advlab_config", {}).get("name", Path(model_dir).name))
        else:
            model, name = trained_model("seed-mlp"), "seed-mlp"
    else:
        name = str(getattr(model, "advlab_name", "") or type(model).__name__)
    state = Playground(model, name, Path(runs_dir), time_limit)

    app = FastAPI(
        title="advlab playground",
        description="Draw or pick a digit, attack it, and watch the network be fooled.",
        version="1",
        docs_url=None,  # Swagger UI and ReDoc load from a CDN; /docs below works offline
        redoc_url=None,
    )
    app.state.playground = state
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
            parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg")))
        return JSONResponse(status_code=422, content={"detail": "; ".join(parts) or "invalid request"})

    @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
    def docs() -> HTMLResponse:
        from advlab.serve.docs import api_docs_html

        return HTMLResponse(api_docs_html(app.openapi()))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        """The model, its classes, the attacks on offer and the request limits."""
        return {
            "model": state.model_name,
            "classes": state.classes,
            "attacks": [
                {"name": n, "norms": list(c.norms), "minimal": c.minimal, "targeted": c.supports_targeted, "paper": c.paper}
                for n, c in state.attacks.items()
            ],
            "defenses": list(DEFENSES),
            "eps_limits": EPS_LIMITS,
            "max_steps": MAX_STEPS,
            "max_body_bytes": MAX_BODY_BYTES,
            "time_limit_seconds": state.time_limit,
        }

    @app.get("/api/samples")
    def samples(count: int = 12, offset: int = 0) -> list[dict[str, Any]]:
        """Test images of the embedded MNIST sample (never used in training)."""
        if not 1 <= count <= 100:
            raise HTTPException(422, "count must lie in 1..100")
        if not 0 <= offset < len(state.y_test):
            raise HTTPException(422, f"offset must lie in 0..{len(state.y_test) - 1}")
        out = []
        for i in range(offset, min(offset + count, len(state.y_test))):
            out.append({"index": i, "label": int(state.y_test[i]), "image": [round(float(v), 4) for v in state.x_test[i].reshape(-1)]})
        return out

    @app.post("/api/predict", response_model=Prediction)
    def predict(req: PredictRequest) -> Prediction:
        """The model's prediction and activations for one image."""
        image = torch.tensor(req.image, dtype=torch.float32).reshape(1, 1, IMAGE_SIDE, IMAGE_SIDE)
        return state.predict(image, req.defense)

    @app.post("/api/attack", response_model=AttackResponse)
    async def attack(req: AttackRequest) -> AttackResponse:
        """Run an attack on one image (time-limited; one attack at a time)."""
        turn = state.turn()
        if turn.locked() and state.waiting >= MAX_WAITING:
            raise HTTPException(
                429, f"busy: one attack is running and {state.waiting} are waiting; retry in a few seconds",
                headers={"Retry-After": str(math.ceil(state.time_limit))},
            )
        state.waiting += 1
        try:
            await turn.acquire()
        finally:
            state.waiting -= 1
        try:
            # The attack stops itself at the time limit (advlab.victim.time_limit), so the
            # turn is released as soon as this returns, and the requests behind it get theirs.
            return await asyncio.get_running_loop().run_in_executor(None, state.attack, req)
        finally:
            turn.release()

    @app.get("/api/reports")
    def reports() -> list[dict[str, str]]:
        """Evaluation reports (``RUN/report.html``) in the runs folder."""
        return state.reports()

    @app.get("/reports/{name}", include_in_schema=False)
    def report(name: str) -> FileResponse:
        known = {r["name"] for r in state.reports()}
        if name not in known:
            raise HTTPException(404, f"no report named {name!r}")
        return FileResponse(state.runs_dir / name / "report.html", media_type="text/html")

    return app
