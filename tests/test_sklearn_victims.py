"""scikit-learn classifiers as torch victims: exact predictions, exact gradients, clear errors,
safetensors round trip, and gradient attacks that break them (Biggio et al. 2013)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression, SGDClassifier
from sklearn.naive_bayes import GaussianNB
from sklearn.svm import SVC, LinearSVC
from threadpoolctl import threadpool_limits

from _attacks import pgd
from advlab.attacks import UnknownAttackError, get_attack
from advlab.models import from_sklearn, load_model, save_model, sklearn_scores
from advlab.threat import ThreatModel
from advlab.validation import InputError

N_FIT = 1000


def _fit(est, x, y):
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")  # convergence warnings on the small sample
        return est.fit(x, y)


@pytest.fixture(scope="module")
def digits(mnist):
    x = mnist.x_train[:N_FIT].reshape(N_FIT, -1).numpy()
    y = mnist.y_train[:N_FIT].numpy()
    return x, y, mnist.x_test, mnist.y_test


@pytest.fixture(scope="module")
def fitted(digits):
    x, y, _, _ = digits
    binary = (y >= 5).astype(np.int64)
    return {
        "logreg": _fit(LogisticRegression(max_iter=100), x, y),
        "logreg-binary": _fit(LogisticRegression(max_iter=100), x, binary),
        "linear-svm": _fit(LinearSVC(), x, y),
        "linear-svm-binary": _fit(LinearSVC(), x, binary),
        "sgd": _fit(SGDClassifier(random_state=0), x, y),
        "svc-rbf": _fit(SVC(), x, y),
        "svc-rbf-break-ties": _fit(SVC(break_ties=True), x, y),
        "svc-rbf-binary": _fit(SVC(), x, binary),
        "svc-poly": _fit(SVC(kernel="poly", degree=2), x, y),
        "gaussian-nb": _fit(GaussianNB(), x, y),
    }


def _sk_pred(est, x_test):
    return est.predict(x_test.reshape(len(x_test), -1).numpy())


@pytest.mark.parametrize(
    "key",
    ["logreg", "logreg-binary", "linear-svm", "linear-svm-binary", "sgd", "svc-rbf", "svc-rbf-break-ties", "svc-rbf-binary", "svc-poly", "gaussian-nb"],
)
def test_wrapper_predictions_equal_sklearn_exactly(fitted, digits, key):
    est = fitted[key]
    x_test = digits[2]
    victim = from_sklearn(est)
    classes = np.asarray(est.classes_)
    expected = _sk_pred(est, x_test)
    # float32 images through the module (what attacks see) and the float64 predict helper
    assert np.array_equal(classes[victim(x_test).argmax(dim=1).numpy()], expected)
    assert np.array_equal(classes[victim.predict(x_test).numpy()], expected)
    assert victim.predict_labels(x_test[:5]) == expected[:5].tolist()


def test_logits_are_sklearn_scores(fitted, digits):
    x = digits[2][:200].reshape(200, -1)
    xn = x.numpy()
    for key in ("linear-svm", "linear-svm-binary", "svc-rbf-break-ties", "svc-rbf-binary"):
        est, victim = fitted[key], from_sklearn(fitted[key])
        dec = victim.decision(x.double()).numpy()
        ref = est.decision_function(xn)
        got = dec[:, 1] if ref.ndim == 1 else dec
        assert np.allclose(got, ref, rtol=1e-5, atol=1e-5), key
    for key in ("logreg", "gaussian-nb"):  # softmax of the logits is predict_proba (fitted in float32)
        est, victim = fitted[key], from_sklearn(fitted[key])
        p = torch.softmax(victim.decision(x.double()), dim=1).numpy()
        assert np.allclose(p, est.predict_proba(xn), atol=1e-3), key


def test_svc_vote_ties_follow_libsvm(fitted, digits):
    """With break_ties=False libsvm gives a tie of one-vs-one votes to the first class; the
    confidence-based one-vs-rest scores can disagree.  Both behaviours are reproduced."""
    x_test = digits[2]
    plain, broken = fitted["svc-rbf"], fitted["svc-rbf-break-ties"]
    differ = _sk_pred(plain, x_test) != _sk_pred(broken, x_test)
    assert differ.any(), "the sample has no vote ties: this test would not check the tie rule"
    for est in (plain, broken):
        assert np.array_equal(from_sklearn(est).predict(x_test).numpy()[differ], _sk_pred(est, x_test)[differ])


def test_gradients_are_exact(fitted, digits):
    # linear binary: d(z1 - z0)/dx = coef_
    for key in ("linear-svm-binary", "logreg-binary"):
        est, victim = fitted[key], from_sklearn(fitted[key])
        x = digits[2][:3].clone().requires_grad_(True)
        z = victim(x)
        (g,) = torch.autograd.grad((z[:, 1] - z[:, 0]).sum(), x)
        assert torch.allclose(g.reshape(3, -1), torch.as_tensor(est.coef_, dtype=torch.float32).expand(3, -1), atol=1e-6)
    # naive Bayes: d jll_c / dx = -(x - theta_c) / var_c
    est, victim = fitted["gaussian-nb"], from_sklearn(fitted["gaussian-nb"])
    x = digits[2][:1].reshape(1, -1).double().requires_grad_(True)
    (g,) = torch.autograd.grad(victim.decision(x)[0, 3], x)
    expected = -(x.detach()[0].numpy() - est.theta_[3]) / est.var_[3]
    assert np.allclose(g[0].numpy(), expected, rtol=1e-4)
    # kernel SVM: finite differences on a few coordinates (float64)
    victim = from_sklearn(fitted["svc-rbf-binary"])
    rest = digits[2][:2].reshape(2, -1).double()
    part = rest[:, 400:412].clone().requires_grad_(True)

    def f(part):
        return victim.decision(torch.cat([rest[:, :400], part, rest[:, 412:]], dim=1))

    assert torch.autograd.gradcheck(f, (part,), eps=1e-6, atol=1e-5, rtol=1e-3)


def test_errors_name_the_problem(fitted, digits):
    with pytest.raises(InputError, match="not fitted"):
        from_sklearn(LogisticRegression())
    with pytest.raises(InputError, match="not a classifier"):
        from_sklearn(LinearRegression().fit(np.zeros((4, 2)), np.arange(4.0)))
    forest = _fit(RandomForestClassifier(n_estimators=3, random_state=0), digits[0][:200], digits[1][:200])
    with pytest.raises(InputError, match="sklearn_scores"):
        from_sklearn(forest)
    with pytest.raises(InputError, match="kernel"):
        from_sklearn(_fit(SVC(kernel="precomputed"), np.eye(4), np.array([0, 1, 0, 1])))
    with pytest.raises(InputError, match="fitted scikit-learn classifier"):
        from_sklearn(object())
    victim = from_sklearn(fitted["logreg"])
    with pytest.raises(InputError, match="wrong width.*784"):
        victim(torch.zeros(2, 100))
    with pytest.raises(InputError, match="wrong width"):
        pgd(steps=2)(victim, torch.zeros(2, 1, 14, 14), torch.tensor([0, 1]), ThreatModel("linf", eps=0.1))


def test_images_and_flat_vectors_agree(fitted, digits):
    victim = from_sklearn(fitted["svc-rbf"])
    x = digits[2][:20]
    assert torch.equal(victim(x), victim(x.reshape(20, -1)))


def test_save_and_load_roundtrip_without_pickle(fitted, digits, tmp_path):
    x = digits[2][:100]
    for key in ("logreg", "svc-rbf", "gaussian-nb", "linear-svm-binary"):
        victim = from_sklearn(fitted[key])
        folder = save_model(victim, tmp_path / key)
        assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
        loaded = load_model(folder)
        assert type(loaded) is type(victim)
        assert torch.equal(loaded(x), victim(x)), key


def test_black_box_scores_query_any_classifier(digits):
    x, y, x_test, _ = digits
    forest = _fit(RandomForestClassifier(n_estimators=5, random_state=0), x[:300], y[:300])
    flat = x_test[:20].reshape(20, -1).numpy()
    scores = sklearn_scores(forest)
    assert np.array_equal(scores(x_test[:20]).argmax(dim=1).numpy(), forest.predict(flat))
    labels = sklearn_scores(forest, output="label")(x_test[:20])
    assert torch.equal(labels.sum(dim=1), torch.ones(20))
    assert np.array_equal(labels.argmax(dim=1).numpy(), forest.predict(flat))
    x_grad = x_test[:2].clone().requires_grad_(True)
    assert not scores(x_grad).requires_grad  # no gradient leaks out of a black box
    with pytest.raises(InputError, match="not fitted"):
        sklearn_scores(RandomForestClassifier())


@pytest.mark.parametrize("key", ["logreg", "linear-svm"])
def test_gradient_attack_breaks_linear_models(fitted, digits, key):
    """Linear models on MNIST fall to small Linf perturbations (Biggio et al. 2013, arXiv:1708.06131)."""
    victim = from_sklearn(fitted[key])
    x, y = digits[2][:100], digits[3][:100]
    threat = ThreatModel("linf", eps=0.15)
    result = pgd(steps=20)(victim, x, y, threat)
    assert result.clean_accuracy >= 0.75
    assert result.summary()["success_rate_on_correct"] >= 0.95
    assert result.robust_accuracy <= 0.05
    assert bool(threat.contains(result.x_adv, x).all())
    # every success is a real one for scikit-learn itself
    sk = fitted[key].predict(result.x_adv.reshape(100, -1).numpy())
    assert np.array_equal(sk != y.numpy(), result.success.numpy())


def test_any_classifier_behind_the_black_box(digits):
    blackbox = pytest.importorskip("advlab.blackbox")  # lands with the black-box branch
    from advlab.models import sklearn_blackbox

    x, y, x_test, _ = digits
    forest = _fit(RandomForestClassifier(n_estimators=5, random_state=0), x[:300], y[:300])
    flat = x_test[:10].reshape(10, -1).numpy()
    box = sklearn_blackbox(forest, output="scores", budget=2)
    assert np.allclose(box.scores(x_test[:10]).numpy(), forest.predict_proba(flat), atol=1e-9)
    assert np.array_equal(box.labels(x_test[:10]).numpy(), forest.predict(flat))
    with pytest.raises(blackbox.BlackBoxError):
        box.query(x_test[:10])  # a third query for these samples is over the budget
    labels = sklearn_blackbox(forest, output="labels")
    assert np.array_equal(labels.query(x_test[:10]).numpy(), forest.predict(flat))


def test_no_attack_beats_the_linear_optimum(fitted, digits):
    """Binary linear SVM: a successful perturbation is at least |f(x)| / ||w|| long in L2."""
    est = fitted["linear-svm-binary"]
    victim = from_sklearn(est)
    x, y = digits[2][:60], (digits[3][:60] >= 5).long()
    flat = x.reshape(60, -1).numpy()
    optimum = torch.from_numpy(np.abs(est.decision_function(flat)) / np.linalg.norm(est.coef_)).float()
    attacks = [(pgd(steps=20), ThreatModel("linf", eps=0.1))]
    try:
        attacks.append((get_attack("cw-l2", steps=30, search_steps=4), ThreatModel("l2")))
    except UnknownAttackError:  # the minimal-norm attacks land separately
        pass
    for attack, threat in attacks:
        r = attack(victim, x, y, threat)
        ok = r.success & r.clean_correct
        assert ok.float().mean() >= 0.5
        assert bool((r.norms["l2"][ok] >= optimum[ok] * (1 - 1e-4) - 1e-5).all())


def test_a_classifier_without_probabilities_is_told_the_word_that_works(digits):
    """SVC has no predict_proba: the error names output='labels', and that (or 'label', the
    word SklearnScores uses) then works."""
    from sklearn.svm import LinearSVC

    from advlab import InputError
    from advlab.models import sklearn_blackbox

    x, y, x_test, _ = digits
    svm = _fit(LinearSVC(), x[:300], y[:300])
    with pytest.raises(InputError, match="output='labels'"):
        sklearn_blackbox(svm)
    flat = x_test[:5].reshape(5, -1).numpy()
    for word in ("labels", "label"):
        assert np.array_equal(sklearn_blackbox(svm, output=word).query(x_test[:5]).numpy(), svm.predict(flat))
