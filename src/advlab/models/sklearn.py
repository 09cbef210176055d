"""Fitted scikit-learn classifiers as exactly differentiable torch victims.

Gradient-based evasion of conventional classifiers goes back to Biggio et al. 2013,
"Evasion attacks against machine learning at test time" (arXiv:1708.06131), who attacked
linear and RBF-kernel SVMs on MNIST.  The wrappers here copy the fitted arrays out of the
estimator and recompute its decision function in torch (float64 inside, logits in the
input's dtype), so every white-box attack in advlab runs on them unchanged:

================================  ===========================================================
estimator                          logits
================================  ===========================================================
LogisticRegression, LinearSVC,     ``x @ coef_.T + intercept_`` (one-vs-rest / multinomial);
SGDClassifier, RidgeClassifier,    binary: ``[0, decision_function(x)]`` (softmax equals
Perceptron (any linear model)      ``predict_proba`` for logistic regression)
SVC / NuSVC (rbf, linear, poly,    scikit-learn's ``decision_function_shape="ovr"`` values
sigmoid kernels)                   (one-vs-one votes plus normalised confidences), computed
                                   from support vectors, dual coefficients and intercepts
GaussianNB                         the joint log-likelihood (softmax equals ``predict_proba``)
================================  ===========================================================

The wrapped model's ``argmax`` equals ``estimator.predict`` (as class indices into
``classes_``), including scikit-learn's tie rule for one-vs-one votes: when several classes
get the most votes, libsvm returns the first one; the wrapper adds a constant (no gradient)
to that class's logit in exactly those cases, so the logits stay piecewise differentiable.
The wrapper computes in float64; scikit-learn keeps float32 when it was fitted on float32
data, so the two can only disagree on inputs whose top two scores lie within scikit-learn's
own float32 rounding error of each other (none of the 1,000 MNIST-sample test digits does,
for any wrapped estimator; see the tests).

Any other classifier can still be attacked as a black box through :func:`sklearn_scores`
(a module that queries ``predict_proba`` or ``predict`` and has no gradient).

Example
-------
>>> victim = from_sklearn(LogisticRegression().fit(x.reshape(len(x), -1), y))  # doctest: +SKIP
>>> result = get_attack("pgd")(victim, x, y, ThreatModel("linf", eps=0.1))       # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from advlab.validation import InputError

__all__ = [
    "SklearnLinear",
    "SklearnSVC",
    "SklearnGaussianNB",
    "SklearnScores",
    "from_sklearn",
    "sklearn_scores",
    "sklearn_blackbox",
    "SUPPORTED_ESTIMATORS",
]

SUPPORTED_ESTIMATORS = (
    "LogisticRegression, LinearSVC, SGDClassifier and other linear classifiers, "
    "SVC/NuSVC (rbf, linear, poly, sigmoid kernels), GaussianNB"
)
_KERNELS = ("rbf", "linear", "poly", "sigmoid")
# Added to libsvm's choice when one-vs-one votes tie (scores differ by at most 2/3 otherwise).
_TIE_GAP = 1e-3


def _flatten(x: Tensor, width: int, what: str) -> Tensor:
    """Inputs as (N, width) float64 rows: images (N, C, H, W) are flattened."""
    if not isinstance(x, Tensor):
        raise InputError(f"{what} expects a torch tensor, got {type(x).__name__}")
    if x.dim() < 2:
        raise InputError(f"{what} expects a batch (N, {width}) or (N, C, H, W), got shape {tuple(x.shape)}")
    flat = x.reshape(x.shape[0], -1)
    if flat.shape[1] != width:
        raise InputError(
            f"features of the wrong width: {what} was fitted on {width} features, got inputs of "
            f"shape {tuple(x.shape)} ({flat.shape[1]} features per sample)"
        )
    return flat.to(torch.float64)


class _SklearnVictim(nn.Module):
    """Shared parts: class labels, float64 buffers, output in the input's dtype."""

    estimator_name: str = ""
    # `advlab train` cannot fit these: they are copies of an estimator fitted by scikit-learn.
    train_hint = "fit the estimator with scikit-learn, then wrap it with advlab.models.from_sklearn(estimator)"

    def __init__(self, in_features: int, classes: list[Any], estimator: str) -> None:
        super().__init__()
        if in_features < 1:
            raise InputError(f"in_features must be >= 1, got {in_features}")
        if len(classes) < 2:
            raise InputError(f"a classifier needs at least 2 classes, got {classes!r}")
        self.in_features = int(in_features)
        self.classes = list(classes)
        self.estimator = estimator

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def decision(self, x: Tensor) -> Tensor:
        """Logits in float64 (what :meth:`forward` returns before the dtype cast)."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        out = self.decision(_flatten(x, self.in_features, self.estimator))
        return out.to(x.dtype) if x.dtype.is_floating_point else out

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """Predicted class indices (positions in ``classes``), computed in float64."""
        return self.decision(_flatten(x, self.in_features, self.estimator)).argmax(dim=1)

    def predict_labels(self, x: Tensor) -> list[Any]:
        """Predicted labels as scikit-learn's ``predict`` returns them."""
        return [self.classes[i] for i in self.predict(x).tolist()]

    def extra_repr(self) -> str:
        return f"estimator={self.estimator}, in_features={self.in_features}, classes={self.num_classes}"


class SklearnLinear(_SklearnVictim):
    """A linear classifier ``x @ weight.T + bias`` (binary: logits ``[0, f(x)]``).

    Built by :func:`from_sklearn` from any fitted scikit-learn linear classifier.
    """

    weight: Tensor
    bias: Tensor

    def __init__(self, in_features: int, classes: list[Any], estimator: str = "linear") -> None:
        super().__init__(in_features, classes, estimator)
        rows = 1 if len(classes) == 2 else len(classes)
        self.register_buffer("weight", torch.zeros(rows, in_features, dtype=torch.float64))
        self.register_buffer("bias", torch.zeros(rows, dtype=torch.float64))

    def decision(self, x: Tensor) -> Tensor:
        f = x @ self.weight.T + self.bias
        if self.weight.shape[0] == 1:
            return torch.cat([torch.zeros_like(f), f], dim=1)
        return f


class SklearnSVC(_SklearnVictim):
    """A kernel SVM from its support vectors, dual coefficients and intercepts.

    The logits are scikit-learn's one-vs-rest decision values built from the one-vs-one
    classifiers (``votes + conf / (3 (|conf| + 1))``); binary SVMs give ``[0, f(x)]``.  With
    ``break_ties=False`` (scikit-learn's default) vote ties go to the first class, as libsvm
    does.  Cost: one kernel row against every support vector per input.
    """

    support_vectors: Tensor
    dual_coef: Tensor
    intercept: Tensor

    def __init__(
        self,
        in_features: int,
        classes: list[Any],
        n_support: list[int],
        kernel: str = "rbf",
        gamma: float = 1.0,
        coef0: float = 0.0,
        degree: int = 3,
        break_ties: bool = False,
        estimator: str = "SVC",
    ) -> None:
        super().__init__(in_features, classes, estimator)
        if kernel not in _KERNELS:
            raise InputError(f"kernel {kernel!r} is not supported; expected one of {_KERNELS}")
        if len(n_support) != len(classes):
            raise InputError(f"n_support has {len(n_support)} entries for {len(classes)} classes")
        self.kernel, self.gamma, self.coef0, self.degree = kernel, float(gamma), float(coef0), int(degree)
        self.n_support = [int(v) for v in n_support]
        self.break_ties = bool(break_ties)
        c, m = len(classes), sum(self.n_support)
        pairs = c * (c - 1) // 2
        self.register_buffer("support_vectors", torch.zeros(m, in_features, dtype=torch.float64))
        self.register_buffer("dual_coef", torch.zeros(c - 1, m, dtype=torch.float64))
        self.register_buffer("intercept", torch.zeros(pairs, dtype=torch.float64))

    def gram(self, x: Tensor) -> Tensor:
        """Kernel values between ``x`` (N, D) and the support vectors (N, M)."""
        sv = self.support_vectors
        dot = x @ sv.T
        if self.kernel == "linear":
            return dot
        if self.kernel == "poly":
            return (self.gamma * dot + self.coef0) ** self.degree
        if self.kernel == "sigmoid":
            return torch.tanh(self.gamma * dot + self.coef0)
        sq = (x * x).sum(dim=1, keepdim=True) + (sv * sv).sum(dim=1)[None, :] - 2.0 * dot
        return torch.exp(-self.gamma * sq.clamp_min(0.0))

    def pairwise(self, x: Tensor) -> Tensor:
        """One-vs-one decision values (N, C(C-1)/2) in libsvm's order ((0,1), (0,2), ..., (1,2), ...);
        positive means the first class of the pair wins.  Binary: scikit-learn's sign convention
        (positive means ``classes[1]``)."""
        k = self.gram(x)
        c = self.num_classes
        if c == 2:
            return k @ self.dual_coef[0] + self.intercept
        start = np.concatenate([[0], np.cumsum(self.n_support)]).tolist()
        cols = []
        for i in range(c):
            si, ei = start[i], start[i + 1]
            for j in range(i + 1, c):
                sj, ej = start[j], start[j + 1]
                cols.append(k[:, si:ei] @ self.dual_coef[j - 1, si:ei] + k[:, sj:ej] @ self.dual_coef[i, sj:ej])
        return torch.stack(cols, dim=1) + self.intercept

    def decision(self, x: Tensor) -> Tensor:
        dec = self.pairwise(x)
        c = self.num_classes
        if c == 2:
            return torch.cat([torch.zeros_like(dec[:, None]), dec[:, None]], dim=1)
        first, second = torch.triu_indices(c, c, offset=1, device=x.device)
        wins_first = (dec > 0).to(dec.dtype)
        votes = torch.zeros(x.shape[0], c, dtype=dec.dtype, device=x.device)
        votes.index_add_(1, first, wins_first)
        votes.index_add_(1, second, 1.0 - wins_first)
        conf = torch.zeros_like(votes).index_add(1, first, dec).index_add(1, second, -dec)
        logits = votes + conf / (3.0 * (conf.abs() + 1.0))
        if self.break_ties:
            return logits
        # libsvm: the first class with the most votes; fix the (rare) rows where confidences disagree.
        want = votes.argmax(dim=1)
        got = logits.argmax(dim=1)
        fix = (want != got).nonzero().squeeze(1)
        if fix.numel():
            bump = torch.zeros_like(logits)
            rows = logits[fix].detach()
            gap = rows.amax(dim=1) - rows.gather(1, want[fix, None]).squeeze(1) + _TIE_GAP
            bump[fix, want[fix]] = gap
            logits = logits + bump
        return logits


class SklearnGaussianNB(_SklearnVictim):
    """Gaussian naive Bayes: logits are the joint log-likelihood
    ``log P(c) - 1/2 sum_d [log(2 pi var_cd) + (x_d - theta_cd)^2 / var_cd]``."""

    theta: Tensor
    var: Tensor
    log_prior: Tensor

    def __init__(self, in_features: int, classes: list[Any], estimator: str = "GaussianNB") -> None:
        super().__init__(in_features, classes, estimator)
        c = len(classes)
        self.register_buffer("theta", torch.zeros(c, in_features, dtype=torch.float64))
        self.register_buffer("var", torch.ones(c, in_features, dtype=torch.float64))
        self.register_buffer("log_prior", torch.zeros(c, dtype=torch.float64))

    def decision(self, x: Tensor) -> Tensor:
        norm = -0.5 * torch.log(self.var * (2.0 * torch.pi)).sum(dim=1)
        sq = ((x[:, None, :] - self.theta[None]) ** 2 / self.var[None]).sum(dim=2)
        return self.log_prior + norm - 0.5 * sq


# ---------------------------------------------------------------------- conversion
def _require_sklearn() -> Any:
    try:
        import sklearn  # noqa: F401
        from sklearn.utils.validation import check_is_fitted
    except ImportError as exc:  # pragma: no cover - scikit-learn comes with mlxtend
        raise ImportError("wrapping scikit-learn estimators needs scikit-learn: pip install scikit-learn") from exc
    return check_is_fitted


def _check_fitted_classifier(estimator: Any) -> None:
    check_is_fitted = _require_sklearn()
    from sklearn.base import is_classifier

    if not hasattr(estimator, "fit") or not hasattr(estimator, "get_params"):
        raise InputError(f"expected a fitted scikit-learn classifier, got {type(estimator).__name__}")
    if not is_classifier(estimator):
        raise InputError(f"{type(estimator).__name__} is not a classifier; advlab attacks classifiers ({SUPPORTED_ESTIMATORS})")
    from sklearn.exceptions import NotFittedError

    try:
        check_is_fitted(estimator)
    except NotFittedError:
        raise InputError(f"the {type(estimator).__name__} is not fitted: call .fit(X, y) before wrapping it") from None


def _classes(estimator: Any) -> list[Any]:
    return np.asarray(estimator.classes_).tolist()


def _width(estimator: Any) -> int:
    n = getattr(estimator, "n_features_in_", None)
    if n is None:
        raise InputError(f"{type(estimator).__name__} has no n_features_in_; fit it on an array first")
    return int(n)


def _buffer(a: Any) -> Tensor:
    if hasattr(a, "toarray"):  # scipy sparse (e.g. SVC fitted on sparse data)
        a = a.toarray()
    return torch.from_numpy(np.array(a, dtype=np.float64, copy=True))


def _tag(model: nn.Module, name: str, kwargs: dict[str, Any]) -> nn.Module:
    model.advlab_config = {"name": name, "kwargs": kwargs}  # type: ignore[assignment]
    return model.eval()


def from_sklearn(estimator: Any) -> nn.Module:
    """A torch victim that computes exactly what a fitted scikit-learn classifier computes.

    Parameters
    ----------
    estimator:
        A fitted classifier: a linear model (``LogisticRegression``, ``LinearSVC``,
        ``SGDClassifier``, ...), ``SVC``/``NuSVC`` with an rbf, linear, poly or sigmoid kernel,
        or ``GaussianNB``.  It must have been fitted on flat feature vectors; the victim
        accepts those or images ``(N, C, H, W)`` that flatten to the same width.

    Returns
    -------
    nn.Module
        Maps inputs to logits over ``estimator.classes_`` (label ``i`` is ``classes_[i]``).  Save
        it with :func:`advlab.models.save_model` (safetensors of the extracted arrays + JSON).

    Raises
    ------
    InputError
        For an unfitted estimator, a regressor, or an estimator with no differentiable
        torch version (use :func:`sklearn_scores` to attack it as a black box).

    Notes
    -----
    Evasion of SVMs and linear classifiers by gradient descent: Biggio et al. 2013,
    arXiv:1708.06131.
    """
    _check_fitted_classifier(estimator)
    from sklearn.linear_model._base import LinearClassifierMixin
    from sklearn.naive_bayes import GaussianNB
    from sklearn.svm._base import BaseSVC

    name = type(estimator).__name__
    classes, width = _classes(estimator), _width(estimator)
    kwargs: dict[str, Any] = {"in_features": width, "classes": classes, "estimator": name}
    if isinstance(estimator, LinearClassifierMixin):
        lin = SklearnLinear(**kwargs)
        lin.weight.copy_(_buffer(estimator.coef_).reshape(lin.weight.shape))
        lin.bias.copy_(_buffer(np.broadcast_to(estimator.intercept_, tuple(lin.bias.shape))))
        return _tag(lin, "sklearn-linear", kwargs)
    if isinstance(estimator, BaseSVC):
        kernel = estimator.kernel
        if not isinstance(kernel, str) or kernel not in _KERNELS:
            raise InputError(
                f"{name} with kernel={kernel!r} cannot be differentiated here (supported kernels: {_KERNELS}); "
                "attack it as a black box with advlab.models.sklearn_scores(estimator)"
            )
        kwargs.update(
            n_support=np.asarray(estimator.n_support_).tolist(),
            kernel=kernel,
            gamma=float(getattr(estimator, "_gamma", estimator.gamma if isinstance(estimator.gamma, float) else 1.0)),
            coef0=float(estimator.coef0),
            degree=int(estimator.degree),
            break_ties=bool(getattr(estimator, "break_ties", False)),
        )
        svc = SklearnSVC(**kwargs)
        svc.support_vectors.copy_(_buffer(estimator.support_vectors_))
        svc.dual_coef.copy_(_buffer(estimator.dual_coef_))
        svc.intercept.copy_(_buffer(estimator.intercept_).reshape(-1))
        return _tag(svc, "sklearn-svc", kwargs)
    if isinstance(estimator, GaussianNB):
        nb = SklearnGaussianNB(**kwargs)
        nb.theta.copy_(_buffer(estimator.theta_))
        nb.var.copy_(_buffer(estimator.var_))
        nb.log_prior.copy_(_buffer(np.log(estimator.class_prior_)))
        return _tag(nb, "sklearn-gnb", kwargs)
    raise InputError(
        f"{name} has no differentiable torch version (white-box wrappers exist for {SUPPORTED_ESTIMATORS}); "
        "attack it as a black box with advlab.models.sklearn_scores(estimator)"
    )


# ---------------------------------------------------------------------- black box
_OUTPUT_ALIASES = {"scores": "proba", "labels": "label"}


class SklearnScores(nn.Module):
    """Any fitted classifier as a module that only answers queries (no gradient).

    ``output="proba"`` returns ``log(predict_proba(x))`` (clipped at ``log(1e-12)``) as logits,
    ``output="label"`` returns a one-hot score of ``predict(x)``.  Inputs are flattened to
    the estimator's width.  Meant to be put behind advlab's ``BlackBox`` query counter; it
    holds the estimator object itself, so it cannot be saved with :func:`save_model`.
    """

    def __init__(self, estimator: Any, output: str = "proba") -> None:
        super().__init__()
        _check_fitted_classifier(estimator)
        output = _OUTPUT_ALIASES.get(output, output)  # BlackBox's words ('scores', 'labels') work too
        if output not in ("proba", "label"):
            raise InputError(f"output must be 'proba' or 'label', got {output!r}")
        if output == "proba" and not hasattr(estimator, "predict_proba"):
            raise InputError(f"{type(estimator).__name__} has no predict_proba; use output='label'")
        self.estimator_object = estimator
        self.output = output
        self.in_features = _width(estimator)
        self.classes = _classes(estimator)

    def forward(self, x: Tensor) -> Tensor:
        flat = _flatten(x, self.in_features, type(self.estimator_object).__name__)
        arr = flat.detach().cpu().numpy().astype(np.float32)
        if self.output == "proba":
            p = np.asarray(self.estimator_object.predict_proba(arr), dtype=np.float64)
            out = torch.from_numpy(np.log(np.clip(p, 1e-12, None)))
        else:
            labels = np.asarray(self.estimator_object.predict(arr))
            idx = np.searchsorted(np.asarray(self.estimator_object.classes_), labels)
            out = torch.nn.functional.one_hot(torch.from_numpy(idx).long(), len(self.classes)).double()
        return out.to(device=x.device, dtype=x.dtype if x.dtype.is_floating_point else torch.float32)


def sklearn_scores(estimator: Any, output: str = "proba") -> SklearnScores:
    """Wrap any fitted classifier for black-box (query-only) attacks; see :class:`SklearnScores`."""
    return SklearnScores(estimator, output)


def sklearn_blackbox(estimator: Any, output: str = "scores", budget: int | None = None, **kwargs: Any) -> Any:
    """Any fitted classifier behind advlab's query-counting :class:`~advlab.blackbox.BlackBox`.

    ``output="scores"`` answers ``predict_proba`` (for estimators that have it), ``"labels"``
    answers ``predict`` only; ``budget`` and ``kwargs`` go to ``BlackBox``.
    """
    from advlab.blackbox import BlackBox

    output = {"proba": "scores", "label": "labels"}.get(output, output)  # SklearnScores' words work too
    if output not in ("scores", "labels"):
        raise InputError(f"output must be 'scores' or 'labels', got {output!r}")
    _check_fitted_classifier(estimator)
    if output == "scores" and not hasattr(estimator, "predict_proba"):
        raise InputError(f"{type(estimator).__name__} has no predict_proba; use sklearn_blackbox(estimator, output='labels')")
    source = SklearnScores(estimator, output)
    return BlackBox(source, output=output, budget=budget, **kwargs)
