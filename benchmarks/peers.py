"""The same attacks in advlab and in the libraries people use today, behind one signature.

Used by ``benchmarks/compare.py``.  Every runner takes ``(model, x, y, setting)`` with ``x`` a
float32 tensor in [0, 1] and returns the adversarial inputs as a tensor (plus, where the
library reports one, its own success flags, which the caller checks rather than trusts).  A
library that is not installed, or that has no implementation of a setting, simply has no
runner for it.

Peers (the optional ``compare`` extra: ``make compare-deps``):

* torchattacks (Kim 2020, arXiv:2010.01950)
* Foolbox 3 (Rauber et al. 2017/2020, arXiv:1707.04131)
* Adversarial Robustness Toolbox (Nicolae et al. 2018, arXiv:1807.01069)
* adv-lib (Rony et al., https://github.com/jeromerony/adversarial-library)
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from advlab.attacks import get_attack
from advlab.threat import ThreatModel

INF = float("inf")


@dataclass(frozen=True)
class Setting:
    """One row of the comparison: an attack family at a fixed budget (or minimal norm)."""

    label: str
    kind: str  # fgsm | bim | pgd | mi-fgsm | apgd-ce | apgd-dlr | ensemble | cw-l2 | ddn | fmn | deepfool
    norm: str  # linf | l2
    eps: float | None  # None: minimal-norm attack
    steps: int = 1
    step_size: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def minimal(self) -> bool:
        return self.eps is None

    @property
    def p(self) -> float:
        return INF if self.norm == "linf" else 2.0


Runner = Callable[[torch.nn.Module, torch.Tensor, torch.Tensor, Setting], "torch.Tensor | tuple[torch.Tensor, torch.Tensor]"]


# --------------------------------------------------------------------------- advlab
grad_kinds = ("bim", "pgd", "mi-fgsm", "apgd-ce", "apgd-dlr")  # fixed-budget attacks with early stopping


def _advlab(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, s: Setting) -> torch.Tensor:
    grad = {"steps": s.steps, "step_size": s.step_size}
    spec: dict[str, tuple[str, dict[str, Any]]] = {
        "fgsm": ("fgsm", {}),
        "bim": ("bim", grad),
        "pgd": ("pgd", grad),
        "mi-fgsm": ("mi-fgsm", {**grad, "momentum": 1.0}),
        "apgd-ce": ("apgd", {"steps": s.steps, "loss": "ce"}),
        "apgd-dlr": ("apgd", {"steps": s.steps, "loss": "dlr"}),
        "ensemble": ("ensemble", {}),
        "cw-l2": ("cw-l2", {}),
        "ddn": ("ddn", {"steps": s.steps}),
        "fmn": ("fmn", {"steps": s.steps}),
        "deepfool": ("deepfool", {"steps": s.steps}),
    }
    name, params = spec[s.kind]
    if "early_stop" in s.extra and name not in ("fgsm", "ensemble") and s.kind in grad_kinds:
        params = {**params, "early_stop": s.extra["early_stop"]}
    attack = get_attack(name, **params)
    result = attack(model, x, y, ThreatModel(s.norm, eps=s.eps), batch_size=len(x))
    return result.x_adv


# --------------------------------------------------------------------------- torchattacks
def _torchattacks(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, s: Setting) -> torch.Tensor:
    import torchattacks as ta

    eps, a = s.eps, s.step_size
    if s.kind == "fgsm":
        atk = ta.FGSM(model, eps=eps)
    elif s.kind == "bim":
        atk = ta.BIM(model, eps=eps, alpha=a, steps=s.steps)
    elif s.kind == "pgd" and s.norm == "linf":
        atk = ta.PGD(model, eps=eps, alpha=a, steps=s.steps, random_start=True)
    elif s.kind == "pgd":
        atk = ta.PGDL2(model, eps=eps, alpha=a, steps=s.steps, random_start=True)
    elif s.kind == "mi-fgsm":
        atk = ta.MIFGSM(model, eps=eps, alpha=a, steps=s.steps, decay=1.0)
    elif s.kind in ("apgd-ce", "apgd-dlr"):
        norm = "Linf" if s.norm == "linf" else "L2"
        atk = ta.APGD(model, norm=norm, eps=eps, steps=s.steps, n_restarts=1, seed=0, loss=s.kind[5:])
    elif s.kind == "ensemble":
        norm = "Linf" if s.norm == "linf" else "L2"
        atk = ta.AutoAttack(model, norm=norm, eps=eps, version="standard", n_classes=10, seed=0)
    elif s.kind == "cw-l2":
        atk = ta.CW(model, c=1.0, kappa=0.0, steps=s.extra["cw_iterations"], lr=0.01)
    elif s.kind == "deepfool" and s.norm == "l2":
        atk = ta.DeepFool(model, steps=s.steps, overshoot=0.02)
    else:
        raise NotImplementedError
    out = atk(x, y)
    return out[0] if isinstance(out, tuple) else out


# --------------------------------------------------------------------------- Foolbox
def _foolbox(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, s: Setting) -> tuple[torch.Tensor, torch.Tensor]:
    import foolbox as fb
    import foolbox.attacks as fa

    fmodel = fb.PyTorchModel(model, bounds=(0.0, 1.0), device=x.device)
    linf = s.norm == "linf"
    if s.kind == "fgsm":
        atk = fa.LinfFastGradientAttack(random_start=False) if linf else fa.L2FastGradientAttack(random_start=False)
    elif s.kind == "bim":
        atk = (fa.LinfBasicIterativeAttack if linf else fa.L2BasicIterativeAttack)(abs_stepsize=s.step_size, steps=s.steps)
    elif s.kind == "pgd":
        atk = (fa.LinfPGD if linf else fa.L2PGD)(abs_stepsize=s.step_size, steps=s.steps, random_start=True)
    elif s.kind == "cw-l2":
        atk = fa.L2CarliniWagnerAttack(binary_search_steps=s.extra["cw_search"], steps=s.extra["cw_iterations"],
                                       stepsize=0.01, initial_const=1e-3, abort_early=True)
    elif s.kind == "ddn":
        atk = fa.DDNAttack(init_epsilon=1.0, steps=s.steps, gamma=0.05)
    elif s.kind == "fmn":
        atk = (fa.LInfFMNAttack if linf else fa.L2FMNAttack)(steps=s.steps)
    elif s.kind == "deepfool":
        atk = (fa.LinfDeepFoolAttack if linf else fa.L2DeepFoolAttack)(steps=s.steps, candidates=10, overshoot=0.02)
    else:
        raise NotImplementedError
    _, clipped, success = atk(fmodel, x, y, epsilons=s.eps)
    return clipped, success


# --------------------------------------------------------------------------- ART
def _art(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, s: Setting) -> torch.Tensor:
    import art.attacks.evasion as ae
    from art.estimators.classification import PyTorchClassifier

    clf = PyTorchClassifier(model=model, loss=torch.nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]), nb_classes=10,
                            clip_values=(0.0, 1.0), device_type="gpu" if x.is_cuda else "cpu")
    norm = np.inf if s.norm == "linf" else 2
    bs = len(x)
    common = {"batch_size": bs, "verbose": False}
    if s.kind == "fgsm":
        atk = ae.FastGradientMethod(clf, norm=norm, eps=s.eps, eps_step=s.eps, batch_size=bs)
    elif s.kind == "bim":
        atk = ae.BasicIterativeMethod(clf, eps=s.eps, eps_step=s.step_size, max_iter=s.steps, **common)
    elif s.kind == "pgd":
        atk = ae.ProjectedGradientDescentPyTorch(clf, norm=norm, eps=s.eps, eps_step=s.step_size, max_iter=s.steps,
                                                 num_random_init=1, **common)
    elif s.kind == "mi-fgsm":
        atk = ae.MomentumIterativeMethod(clf, norm=norm, eps=s.eps, eps_step=s.step_size, decay=1.0, max_iter=s.steps, **common)
    elif s.kind in ("apgd-ce", "apgd-dlr"):
        loss = "cross_entropy" if s.kind == "apgd-ce" else "difference_logits_ratio"
        atk = ae.AutoProjectedGradientDescent(clf, norm=norm, eps=s.eps, eps_step=2 * s.eps, max_iter=s.steps, nb_random_init=1,
                                              loss_type=loss, **common)
    elif s.kind == "cw-l2":
        atk = ae.CarliniL2Method(clf, confidence=0.0, learning_rate=0.01, binary_search_steps=s.extra["cw_search"],
                                 max_iter=s.extra["cw_iterations"], initial_const=1e-3, **common)
    elif s.kind == "deepfool" and s.norm == "l2":
        atk = ae.DeepFool(clf, max_iter=s.steps, epsilon=0.02, nb_grads=10, **common)
    else:
        raise NotImplementedError
    return torch.from_numpy(atk.generate(x=x.cpu().numpy(), y=y.cpu().numpy())).to(x.device)


# --------------------------------------------------------------------------- adv-lib
def _import_adv_lib() -> Any:
    """adv-lib's package ``__init__`` imports torchvision (for LPIPS) and visdom (for logging),
    neither of which it needs for the attacks compared here and neither of which installs
    beside the pinned torch: stand-in modules let the import succeed."""
    if "adv_lib.attacks" not in sys.modules:
        missing = {top for top in ("torchvision", "visdom") if importlib.util.find_spec(top) is None}
        for name in ("torchvision", "torchvision.models", "visdom"):
            if name.split(".")[0] in missing:
                stub = types.ModuleType(name)
                stub.__spec__ = importlib.machinery.ModuleSpec(name, None)
                sys.modules[name] = stub
        if "torchvision" in missing:
            sys.modules["torchvision"].models = sys.modules["torchvision.models"]  # type: ignore[attr-defined]
        if "visdom" in missing:
            sys.modules["visdom"].Visdom = object  # type: ignore[attr-defined]
    import adv_lib.attacks as aa

    return aa


def _adv_lib(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, s: Setting) -> torch.Tensor:
    aa = _import_adv_lib()
    if s.kind == "pgd" and s.norm == "linf":
        return aa.pgd_linf(model, x, y, ε=s.eps, steps=s.steps, random_init=True, restarts=1, absolute_step_size=s.step_size)
    if s.kind in ("apgd-ce", "apgd-dlr"):
        return aa.apgd(model, x, y, eps=s.eps, norm=s.p, n_iter=s.steps, n_restarts=1, loss_function=s.kind[5:])
    if s.kind == "cw-l2":
        return aa.carlini_wagner_l2(model, x, y, confidence=0.0, learning_rate=0.01, initial_const=1e-3,
                                    binary_search_steps=s.extra["cw_search"], max_iterations=s.extra["cw_iterations"], abort_early=True)
    if s.kind == "ddn":
        return aa.ddn(model, x, y, steps=s.steps, γ=0.05, init_norm=1.0)
    if s.kind == "fmn":
        return aa.fmn(model, x, y, norm=s.p, steps=s.steps)
    if s.kind == "deepfool":
        return aa.df(model, x, y, steps=s.steps, overshoot=0.02, norm=s.p)
    raise NotImplementedError


LIBRARIES: dict[str, tuple[str, Runner]] = {
    "advlab": ("advlab", _advlab),
    "torchattacks": ("torchattacks", _torchattacks),
    "foolbox": ("foolbox", _foolbox),
    "art": ("art", _art),
    "adv-lib": ("adv_lib", _adv_lib),
}


def installed(library: str) -> bool:
    return importlib.util.find_spec(LIBRARIES[library][0]) is not None


def supports(library: str, s: Setting) -> bool:
    """Whether ``library`` implements setting ``s`` (its kind under its norm)."""
    table = {
        "advlab": {"*"},
        "torchattacks": {"fgsm-linf", "bim-linf", "pgd-linf", "pgd-l2", "mi-fgsm-linf", "apgd-ce-linf", "apgd-dlr-linf",
                         "apgd-ce-l2", "apgd-dlr-l2", "ensemble-linf", "ensemble-l2", "cw-l2-l2", "deepfool-l2"},
        "foolbox": {"fgsm-linf", "fgsm-l2", "bim-linf", "bim-l2", "pgd-linf", "pgd-l2", "cw-l2-l2", "ddn-l2", "fmn-linf", "fmn-l2",
                    "deepfool-linf", "deepfool-l2"},
        "art": {"fgsm-linf", "fgsm-l2", "bim-linf", "pgd-linf", "pgd-l2", "mi-fgsm-linf", "apgd-ce-linf", "apgd-dlr-linf",
                "apgd-ce-l2", "apgd-dlr-l2", "cw-l2-l2", "deepfool-l2"},
        "adv-lib": {"pgd-linf", "apgd-ce-linf", "apgd-dlr-linf", "apgd-ce-l2", "apgd-dlr-l2", "cw-l2-l2", "ddn-l2", "fmn-linf",
                    "fmn-l2", "deepfool-linf", "deepfool-l2"},
    }[library]
    return "*" in table or f"{s.kind}-{s.norm}" in table
