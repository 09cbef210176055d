"""``advlab.evaluate``: run a plan on a model, persist every unit, audit, escalate, report.

The run is a fixed list of units (:mod:`.units`) per batch of samples; each is computed once,
committed to the run folder's store and never recomputed.  Under ``torchrun`` the batches are
dealt round-robin to the ranks; every stage ends with an all-gather so that all ranks take
the same escalation decisions, and rank 0 writes ``results.json`` and ``report.html``.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advlab.evaluation import keys
from advlab.evaluation.aggregate import Folded, concat_units, fold_all, fold_batch
from advlab.evaluation.audit import escalation_actions, run_checks
from advlab.evaluation.distributed import Cluster, cluster_from_env
from advlab.evaluation.ensemble import build_cascade, minimal_attack, single_step_attack
from advlab.evaluation.plan import EvaluationPlan, as_plan
from advlab.evaluation.results import EvaluationResult, build_results, write_json
from advlab.evaluation.store import Store
from advlab.evaluation.units import (
    Job,
    audit_unit,
    escalation_unit,
    main_unit,
    minimal_unit,
    probe_unit,
    reseed,
    unit_seed,
)

__all__ = ["evaluate", "load_victim", "load_samples"]

log = logging.getLogger(__name__)

Progress = Callable[[str, int], Any]  # (description, total) -> context manager yielding advance(n)


@contextlib.contextmanager
def _no_progress(description: str, total: int) -> Iterator[Callable[[int], None]]:
    yield lambda n: None


def _default_progress(cluster: Cluster) -> Progress:
    """The library's progress display on the main process, nothing on the other ranks."""
    from advlab.progress import progress

    return progress if cluster.main else _no_progress


def load_victim(model: nn.Module | str | Path) -> tuple[nn.Module, str]:
    """A model and its name from a module, a saved model folder or a model-zoo name."""
    if isinstance(model, nn.Module):
        return model, str(getattr(model, "advlab_name", "") or type(model).__name__)
    from advlab.models import load_model, trained_model

    path = Path(model)
    if path.is_dir():
        return load_model(path), str(model)
    if path.exists():
        raise ValueError(f"model {str(model)!r} is a file; give the folder with model.safetensors and config.json")
    return trained_model(str(model)), str(model)


def load_samples(
    data: Any, split: str, samples: int, boxes: tuple[tuple[float, float], ...] = ((0.0, 1.0),)
) -> tuple[torch.Tensor, torch.Tensor, list[str], str]:
    """The first ``samples`` inputs and labels of a dataset (a name, a Dataset or ``(x, y)``),
    checked to lie in every threat model's box."""
    from advlab.validation import as_input_tensor, as_label_tensor

    classes: list[str] | None = None
    name = "custom"
    if isinstance(data, str):
        from advlab.data import load_data

        name = data
        data = load_data(data)
    if isinstance(data, tuple) and len(data) == 2:
        x, y = data
    else:
        if split not in ("test", "train"):
            raise ValueError(f"split must be 'test' or 'train', got {split!r}")
        x, y = getattr(data, f"x_{split}"), getattr(data, f"y_{split}")
        classes = list(getattr(data, "classes", []) or [])
        name = str(getattr(data, "name", "") or name)
    for box in boxes:
        x = as_input_tensor(x, box, device="cpu")
    y = as_label_tensor(y, x.shape[0], None, device="cpu")
    if samples > x.shape[0]:
        raise ValueError(f"the plan asks for {samples} samples but the data has {x.shape[0]}; ask for at most {x.shape[0]} (samples={x.shape[0]}, or --samples {x.shape[0]} on the command line)")
    x, y = x[:samples].contiguous(), y[:samples].contiguous()
    num = int(y.max()) + 1 if len(y) else 0
    return x, y, classes or [str(i) for i in range(num)], name


def _hash_tensors(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def model_hash(model: nn.Module) -> str:
    h = hashlib.sha256(type(model).__name__.encode())
    for key, value in sorted(model.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def evaluate(
    model: nn.Module | str | Path,
    data: Any = "mnist-sample",
    plan: EvaluationPlan | dict[str, Any] | str | Path | None = None,
    *,
    out: str | Path | None = None,
    split: str = "test",
    device: str | torch.device | None = None,
    progress: Progress | None = None,
    report: bool = True,
    **overrides: Any,
) -> EvaluationResult:
    """Evaluate the robustness of ``model`` as ``plan`` says, with an audit for gradient masking.

    Parameters
    ----------
    model:
        Any ``torch.nn.Module`` returning logits (a defended model is attacked the way it
        declares), a saved advlab model folder, or a model-zoo name (``"cnn"``).  A graph
        victim (a GCN, ``"gcn"`` or a saved GCN folder) with graph data runs the graph
        evaluation (:mod:`advlab.graphs.evaluator`, through :mod:`.evaluators`).
    data:
        A dataset name (``"mnist-sample"``), a :class:`advlab.data.Dataset` or ``(x, y)``;
        for graph victims a graph name (``"karate"``, ``"csbm:nodes=300"``) or an
        :class:`advlab.graphs.Graph`.
    plan:
        An :class:`EvaluationPlan` (a :class:`GraphPlan` for graph victims), a dict, a TOML
        file, or ``None`` for the default plan; keyword ``overrides`` replace plan fields
        (``samples=20``; for graphs ``budgets=[0, 4, 8]``, ``goals=["poisoning"]``).
    out:
        The run folder (store, ``results.json``, ``report.html``).  Rerunning the same
        command on the same folder resumes; ``None`` uses a temporary folder (no report).
    device:
        Where to run (default: CUDA when available).  Under ``torchrun`` each rank uses its
        local GPU, or the CPU with gloo.
    progress:
        ``progress(description, total)`` returning a context manager that yields
        ``advance(n)``; by default :func:`advlab.progress.progress` (a bar with an ETA on a
        terminal, plain lines with the time left elsewhere) on the main process.

    Returns
    -------
    :class:`EvaluationResult` (the ``results.json`` contents with helpers).

    Examples
    --------
    >>> result = advlab.evaluate("cnn", "mnist-sample", samples=100, out="runs/cnn")  # doctest: +SKIP
    >>> result.robust_accuracy(0.3)  # doctest: +SKIP
    """
    from advlab.evaluation.evaluators import evaluator_for

    other = evaluator_for(model, data, plan)
    if other is not None:
        if device is not None and str(device) != "cpu":
            log.warning("%s evaluations run on the CPU; device=%s is ignored", other.kind, device)
        return other.evaluate(model, data, plan, out=out, progress=progress, report=report, **overrides)
    the_plan = as_plan(plan, **overrides)
    victim, model_name = load_victim(model)
    x, y, classes, data_name = load_samples(data, split, the_plan.samples, tuple(s.box for s in the_plan.threats))
    cluster = cluster_from_env(device)
    tmp = None
    if out is None:  # nothing to resume or to open afterwards: no report either
        tmp = tempfile.TemporaryDirectory(prefix="advlab-eval-")
        out, report = tmp.name, False
    folder = Path(out)
    try:
        with _borrowed(victim, cluster.device):
            return _run(victim, model_name, x, y, classes, data_name, split, the_plan, folder, cluster, progress or _default_progress(cluster), report, time.perf_counter())
    finally:
        cluster.close()
        if tmp is not None:
            tmp.cleanup()


@contextlib.contextmanager
def _borrowed(model: nn.Module, device: torch.device) -> Iterator[nn.Module]:
    """The caller's model on ``device`` for the run; its device, training flag and
    ``requires_grad`` flags are as they were afterwards (attacks also freeze it per call)."""
    params = list(model.parameters()) + list(model.buffers())
    where = params[0].device if params else None
    was_training = model.training
    flags = [(p, p.requires_grad) for p in model.parameters()]
    moved = where is not None and where != device
    if moved:
        model.to(device)
    try:
        yield model
    finally:
        if moved:
            model.to(where)
        model.train(was_training)
        for p, flag in flags:
            p.requires_grad_(flag)


def _run(
    model: nn.Module,
    model_name: str,
    x: torch.Tensor,
    y: torch.Tensor,
    classes: list[str],
    data_name: str,
    split: str,
    plan: EvaluationPlan,
    folder: Path,
    cluster: Cluster,
    progress: Progress,
    report: bool,
    started: float,
) -> EvaluationResult:
    identity = {"plan": plan.fingerprint(), "model": model_hash(model), "data": _hash_tensors(x, y)}
    store = Store(folder, identity, rank=cluster.rank)
    try:
        return _run_stored(model, model_name, x, y, classes, data_name, split, plan, folder, cluster, progress, report, store, started)
    except BaseException:
        store.discard_if_empty()
        raise


def _run_stored(
    model: nn.Module,
    model_name: str,
    x: torch.Tensor,
    y: torch.Tensor,
    classes: list[str],
    data_name: str,
    split: str,
    plan: EvaluationPlan,
    folder: Path,
    cluster: Cluster,
    progress: Progress,
    report: bool,
    store: Store,
    started: float,
) -> EvaluationResult:
    cascades = {s.key: build_cascade(s, plan.seed) for s in plan.threats}
    job = Job(
        model=model,
        x=x,
        y=y,
        plan=plan,
        device=cluster.device,
        cascades=cascades,
        minimal={s.key: minimal_attack(s, plan.minimal, plan.seed) for s in plan.threats},
        single_step={s.key: single_step_attack(s, plan.seed) for s in plan.threats},
    )
    batches = range(len(job.batches()))
    mine = [b for b in batches if cluster.owns(b)]

    def unit(key: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        got = store.get(key)
        if got is None:
            reseed(model, unit_seed(plan.seed, key))
            store.put(key, fn())
            got = store.get(key)
        assert got is not None
        return got

    # ------------------------------------------------------------ stage 1: attacks and probes
    per_batch = 1 + sum(len(s.eps) + (job.minimal[s.key] is not None) + plan.audit for s in plan.threats)
    units: dict[str, dict[str, Any]] = {}
    with progress(f"evaluating (rank {cluster.rank})" if cluster.world > 1 else "evaluating", per_batch * len(mine)) as advance:
        for b in mine:
            probe = unit(keys.probe(b), partial(probe_unit, job, b))
            units[keys.probe(b)] = probe
            advance(1)
            for spec in plan.threats:
                mains = []
                for eps in spec.eps:
                    key = keys.main(spec.key, eps, b)
                    mains.append(unit(key, partial(main_unit, job, spec, eps, b, probe)))
                    units[key] = mains[-1]
                    advance(1)
                if job.minimal[spec.key] is not None:
                    key = keys.minimal(spec.key, b)
                    units[key] = unit(key, partial(minimal_unit, job, spec, b, probe))
                    advance(1)
                if plan.audit:
                    key = keys.audit(spec.key, b)
                    units[key] = unit(key, partial(audit_unit, job, spec, b, probe, mains))
                    advance(1)
    units = cluster.gather(units)

    folds = {s.key: [_fold(job, s, b, units) for b in batches] for s in plan.threats}
    checks = []
    actions: list[str] = []
    wanted: list[str] = []
    if plan.audit:
        probe_all = concat_units([units[keys.probe(b)] for b in batches])
        mains_all = {s.key: [concat_units([units[keys.main(s.key, e, b)] for b in batches]) for e in s.eps] for s in plan.threats}
        audits_all = {s.key: concat_units([units[keys.audit(s.key, b)] for b in batches]) for s in plan.threats}
        minimal_all = {
            s.key: concat_units([units[keys.minimal(s.key, b)] for b in batches]) if job.minimal[s.key] is not None else None
            for s in plan.threats
        }
        checks = run_checks(job, probe_all, mains_all, audits_all, minimal_all, {k: fold_all(v) for k, v in folds.items()})
        wanted = escalation_actions(checks)
        actions = wanted if plan.escalate else []

    # ------------------------------------------------------------ stage 2: escalation
    escalated: dict[str, list[str]] = {}
    if actions:
        esc_units: dict[str, dict[str, Any]] = {}
        with progress(f"escalating: {', '.join(actions)}", len(mine) * len(plan.threats)) as advance:
            for spec in plan.threats:
                for b in mine:
                    key = keys.escalation(spec.key, actions, b)
                    before = [f.robust for f in folds[spec.key][b]]
                    esc_units[key] = unit(key, partial(escalation_unit, job, spec, b, units[keys.probe(b)], before, actions))
                    advance(1)
        units.update(cluster.gather(esc_units))
        for spec in plan.threats:
            keyed = [units[keys.escalation(spec.key, actions, b)] for b in batches]
            escalated[spec.key] = list(keyed[0]["labels"]) if keyed else []
            folds[spec.key] = [_fold(job, spec, b, units, keyed[b]) for b in batches]
    final = {k: fold_all(v) for k, v in folds.items()}
    cluster.barrier()
    results = build_results(
        job=job,
        units=units,
        folds=final,
        checks=checks,
        actions=actions,
        wanted=wanted,
        escalated=escalated,
        model_name=model_name,
        data_name=data_name,
        split=split,
        classes=classes,
        cluster=cluster,
        wall_seconds=time.perf_counter() - started,
    )
    result = EvaluationResult(results, folder)
    if cluster.main:
        if report:
            from advlab.evaluation.report import render_report

            t0 = time.perf_counter()
            render_report(results, folder)
            results["cost"]["report_seconds"] = time.perf_counter() - t0
        write_json(folder / "results.json", results)
    store.close()
    cluster.barrier()
    return result


def _fold(job: Job, spec: Any, b: int, units: dict[str, dict[str, Any]], escalation: dict[str, Any] | None = None) -> list[Folded]:
    return fold_batch(
        job,
        spec,
        b,
        units[keys.probe(b)],
        [units[keys.main(spec.key, e, b)] for e in spec.eps],
        units.get(keys.minimal(spec.key, b)),
        units.get(keys.audit(spec.key, b)),
        escalation,
    )


__all__ += ["model_hash"]
