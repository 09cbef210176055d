"""The audit: automatic checks that an evaluation is not fooled by gradient masking.

Each check turns evidence gathered during the run into a verdict (``pass``, ``warn``,
``fail`` or ``skipped``), a sentence of evidence, a short explanation and a link to its entry
in ``docs/audit.md``.  A failed check names the escalation it calls for (the adaptive form the
defense declares, log-probabilities instead of probabilities, EOT, more restarts, black-box
attacks); :mod:`advlab.evaluation.runner` runs it on the samples still robust.

The checks follow Carlini et al. 2019, "On evaluating adversarial robustness"
(arXiv:1902.06705), Athalye et al. 2018, "Obfuscated gradients give a false sense of
security" (arXiv:1802.00420) and Croce & Hein 2020, "Reliable evaluation of adversarial
robustness with an ensemble of diverse parameter-free attacks" (arXiv:2003.01690).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from advlab.evaluation.aggregate import Folded
from advlab.evaluation.binarization import BINARIZATION_PASS, BINARIZATION_SAMPLES
from advlab.evaluation.ensemble import label
from advlab.evaluation.flags import BATCH_TOLERANCE
from advlab.evaluation.plan import ThreatSpec
from advlab.evaluation.units import ROBUST, Job

__all__ = ["Check", "run_checks", "DOCS", "ACTIONS"]

DOCS = "docs/audit.md"

# What each escalation action does, in the report's words.
ACTIONS = {
    "adaptive": "attack the adaptive form the defense declares (BPDA, EOT, logits)",
    "logits": "attack log-probabilities instead of the model's probabilities",
    "eot": "attack the expectation over the model's randomness (EOT)",
    "restarts": "rerun the white-box attacks with 4x the restarts and new random starts",
    "blackbox": "add a black-box attack (Square when registered; no gradients needed)",
}

# Tolerances: a share of the evaluated samples.
FAIL_SHARE = 0.01
MASK_SHARE = 0.05


@dataclass
class Check:
    """One audit check's outcome."""

    id: str
    title: str
    verdict: str
    evidence: str
    explanation: str
    threat: str | None = None
    actions: list[str] = field(default_factory=list)
    numbers: dict[str, Any] = field(default_factory=dict)

    @property
    def docs(self) -> str:
        return f"{DOCS}#{self.id}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "docs": self.docs}


def _pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def _share(count: int, n: int) -> float:
    return count / n if n else 0.0


def _masked(flags: np.ndarray, correct: np.ndarray) -> tuple[int, float, str]:
    """Count, share of the correct samples and verdict of a per-sample masking flag:
    ``fail`` above ``MASK_SHARE``, ``warn`` for any."""
    k = int((np.asarray(flags) & correct).sum())
    share = _share(k, int(correct.sum()))
    return k, share, "fail" if share > MASK_SHARE else ("warn" if k else "pass")


def run_checks(
    job: Job,
    probe: dict[str, Any],
    mains: dict[str, list[dict[str, Any]]],
    audits: dict[str, dict[str, Any]],
    minimal: dict[str, dict[str, Any] | None],
    folds: dict[str, list[Folded]],
) -> list[Check]:
    """Every check, on the whole run (all batches joined)."""
    n = job.n
    correct = np.asarray(probe["clean_pred"]) == job.y.numpy()
    n_correct = int(correct.sum())
    declared = job.declares_adaptive
    checks: list[Check] = []

    # ---------------------------------------------------------------- model-level probes
    zero = np.asarray(probe["grad_zero"]) & correct
    nonfinite = np.asarray(probe["grad_nonfinite"]) & correct
    zero_r = np.asarray(probe["grad_zero_random"]) & correct
    share = _share(int((zero | nonfinite | zero_r).sum()), n_correct)
    verdict = "fail" if share > MASK_SHARE else ("warn" if share > 0 else "pass")
    fix = ["adaptive"] if declared and not job.plan.adaptive else []
    handled = " The evaluation attacked the adaptive form the model declares." if declared and job.plan.adaptive and verdict == "fail" else ""
    checks.append(
        Check(
            "gradient-census",
            "Zero or non-finite gradients",
            verdict,
            f"cross-entropy gradient of the deployed model: exactly zero for {int(zero.sum())}, non-finite for "
            f"{int(nonfinite.sum())} of {n_correct} correctly classified samples at the clean input, zero for "
            f"{int(zero_r.sum())} at a random point of the ball ({_pct(share)} affected)." + handled,
            "Gradient attacks cannot move where the gradient vanishes (a saturated softmax, as after defensive "
            "distillation, or a non-differentiable step): robustness measured with them is gradient masking.",
            actions=(fix + ["blackbox", "restarts"]) if verdict == "fail" else [],
            numbers={"zero": int(zero.sum()), "nonfinite": int(nonfinite.sum()), "zero_random": int(zero_r.sum()), "evaluated": n_correct},
        )
    )

    random_out = np.asarray(probe["random_output"])
    r = int(random_out.sum())
    checks.append(
        Check(
            "randomness",
            "Randomness of the output",
            "fail" if r else "pass",
            f"two forward passes on the same input gave different outputs for {r} of {n} samples.",
            "A randomized model gives each attack step a different gradient; it must be attacked through the "
            "expectation over its randomness (EOT), and its robust accuracy is itself a random quantity.",
            actions=["eot"] if r else [],
            numbers={"random": r, "evaluated": n},
        )
    )

    probs = np.asarray(probe["probabilities"])
    p = int(probs.sum())
    is_softmax = p == n
    checks.append(
        Check(
            "softmax-output",
            "Probabilities instead of logits at the output",
            "fail" if is_softmax else "pass",
            f"{p} of {n} outputs are non-negative and sum to 1." + (" The model returns probabilities." if is_softmax else ""),
            "Losses computed on probabilities saturate (their gradient vanishes for confident predictions) and "
            "margin-type losses lose their meaning; attacks must work on logits (log-probabilities).",
            actions=["logits", "blackbox"] if is_softmax else [],
            numbers={"probability_rows": p, "evaluated": n},
        )
    )

    s, share, verdict = _masked(probe["shattered"], correct)
    checks.append(
        Check(
            "shattered-gradients",
            "Binarization-style (piecewise-constant) behaviour",
            verdict,
            f"for {s} of {n_correct} correctly classified samples the logit-margin gradient is exactly zero although "
            "the margin changes when the input moves to a random point of the ball.",
            "A quantizing or thresholding step (binarization, bit-depth reduction, JPEG) makes the model piecewise "
            "constant: the gradient is zero almost everywhere but the output does change. Attack it with BPDA "
            "(a differentiable surrogate on the backward pass) or without gradients.",
            actions=((["adaptive"] if declared and not job.plan.adaptive else []) + ["blackbox"]) if verdict == "fail" else [],
            numbers={"shattered": s, "evaluated": n_correct},
        )
    )

    checks.extend(_flag_checks(job, probe, correct))

    # ---------------------------------------------------------------- per threat model
    for spec in job.plan.threats:
        checks.extend(_threat_checks(job, spec, correct, mains[spec.key], audits.get(spec.key), minimal.get(spec.key), folds[spec.key]))
    return checks


def _flag_checks(job: Job, probe: dict[str, Any], correct: np.ndarray) -> list[Check]:
    """Batch dependence and AutoAttack's flags that the probe measures (zero DLR gradient,
    autograd during inference); skipped on runs stored before they existed."""
    n = job.n
    n_correct = int(correct.sum())
    out: list[Check] = []
    if "batch_affected" in probe:
        affected = np.asarray(probe["batch_affected"])
        diff = np.asarray(probe["batch_difference"], dtype=np.float64)
        k = int(affected.sum())
        random = bool(np.asarray(probe["random_output"]).any())
        worst = float(np.nanmax(np.where(np.isfinite(diff), diff, np.inf))) if len(diff) else 0.0
        if random:
            verdict, evidence = "skipped", "the output is random (see the randomness check), so two batch compositions cannot be compared."
        else:
            verdict = "fail" if k else "pass"
            evidence = (
                f"the same inputs in another batch (reversed, interleaved with uniform-noise rows) changed the logits of {k} of {n} "
                f"samples ({_pct(_share(k, n))}) beyond {BATCH_TOLERANCE:g} of their largest logit; largest relative difference {worst:.3g}."
            )
        out.append(
            Check(
                "batch-dependence",
                "The output of a sample does not depend on its batch",
                verdict,
                evidence,
                "A model whose output for a sample depends on the other samples of its batch (BatchNorm without running "
                "statistics or left in training mode, a batch-wide normalisation) has no single robust accuracy: every "
                "number depends on the batch size and on which samples an attack still works on. Fix the model (eval mode, "
                "running statistics) before evaluating it.",
                numbers={"affected": k, "evaluated": n, "max_relative_difference": worst, "tolerance": BATCH_TOLERANCE},
            )
        )
    if probe.get("dlr_probed"):
        z, share, verdict = _masked(probe["dlr_grad_zero"], correct)
        out.append(
            Check(
                "dlr-zero-gradient",
                "Zero DLR gradient at the start",
                verdict,
                f"the DLR-loss gradient of the deployed model is exactly zero at the clean input for {z} of {n_correct} "
                f"correctly classified samples ({_pct(share)}).",
                "APGD-DLR and APGD-T follow the DLR loss; where its gradient vanishes they cannot take a first step and "
                "the samples look robust (AutoAttack's zero-gradient flag). A scale-invariant loss rules out a saturated "
                "softmax, so the cause is a flat model: quantisation, a detached or non-differentiable step.",
                actions=((["adaptive"] if job.declares_adaptive and not job.plan.adaptive else []) + ["blackbox"]) if verdict == "fail" else [],
                numbers={"zero": z, "evaluated": n_correct},
            )
        )
    if "autograd_in_forward" in probe:
        seen = bool(np.asarray(probe["autograd_in_forward"]).any())
        call = str(probe.get("autograd_call") or "")
        out.append(
            Check(
                "autograd-in-inference",
                "No autograd during inference",
                "fail" if seen else "pass",
                (f"a forward pass run without gradients computed them anyway ({call})." if seen
                 else "a forward pass run without gradients called no autograd."),
                "A model that runs gradient steps inside its forward pass (a test-time optimisation or purification "
                "defense) is dynamic: attacks that differentiate it see a different function than the one that "
                "classifies, and standard attacks such as AutoAttack may be insufficient (AutoAttack's dynamic-defense "
                "flag). It needs an adaptive attack through its inner optimisation (BPDA, EOT) and black-box attacks.",
                actions=((["adaptive"] if job.declares_adaptive and not job.plan.adaptive else []) + ["blackbox"]) if seen else [],
                numbers={"detected": seen, "call": call},
            )
        )
    return out


def _threat_checks(
    job: Job,
    spec: ThreatSpec,
    correct: np.ndarray,
    mains: list[dict[str, Any]],
    audit: dict[str, Any] | None,
    minimal: dict[str, Any] | None,
    folds: list[Folded],
) -> list[Check]:
    n = job.n
    key = spec.key
    out: list[Check] = []
    raw = [correct & (m["broken_by"] == ROBUST) for m in mains]
    raw_acc = [float(r.mean()) for r in raw]
    if audit is None:
        return out

    ok = np.asarray(audit["unbounded_success"])
    rate = float(ok.mean())
    out.append(
        Check(
            "unbounded",
            "An unbounded attack reaches 100%",
            "pass" if rate >= 0.99 else "fail",
            f"{spec.norm} eps={audit['unbounded_eps']:g} (the whole input box): {_pct(rate)} of samples are misclassified "
            f"or broken ({int((~ok).sum())} resisted).",
            "With a budget that covers the whole input box any input can become any other; an attack that cannot "
            "reach 100% there is failing, and its bounded numbers cannot be trusted.",
            threat=key,
            actions=["restarts", "blackbox"] if rate < 0.99 else [],
            numbers={"success_rate": rate, "eps": audit["unbounded_eps"]},
        )
    )

    rises = [(spec.eps[i], spec.eps[i + 1]) for i in range(len(raw_acc) - 1) if raw_acc[i + 1] > raw_acc[i]]
    inversions = sum(int((~raw[i] & raw[i + 1] & correct).sum()) for i in range(len(raw) - 1))
    verdict = "fail" if rises else ("warn" if inversions else "pass")
    curve = ", ".join(f"{e:g}: {_pct(a)}" for e, a in zip(spec.eps, raw_acc, strict=True))
    out.append(
        Check(
            "eps-monotone",
            "Robust accuracy does not rise with eps",
            verdict,
            f"cascade alone, each budget attacked independently: {curve}; {inversions} sample(s) broken at a budget "
            "but not at a larger one. The reported numbers carry every success over to larger budgets.",
            "A larger ball contains the smaller one, so robust accuracy can only fall as eps grows; if it rises the "
            "attack is not finding the worst case.",
            threat=key,
            actions=["restarts"] if verdict == "fail" else [],
            numbers={"raw_robust_accuracy": dict(zip([str(e) for e in spec.eps], raw_acc, strict=True)), "inversions": inversions},
        )
    )

    if "fgsm_broken" in audit:
        fg = np.asarray(audit["fgsm_broken"])
        worse, only = [], 0
        for k, eps in enumerate(spec.eps):
            fgsm_robust = correct & ~fg[:, k]
            if fgsm_robust.mean() < raw_acc[k]:
                worse.append(eps)
            only += int((fg[:, k] & raw[k]).sum())
        verdict = "fail" if worse else ("warn" if only else "pass")
        out.append(
            Check(
                "iterative-vs-single-step",
                "Iterative attacks beat single-step ones",
                verdict,
                "single-step robust accuracy " + ", ".join(f"{e:g}: {_pct(float((correct & ~fg[:, k]).mean()))}" for k, e in enumerate(spec.eps))
                + f" vs cascade {curve}; {only} sample(s) broken by the single step only.",
                "An iterative attack takes the single step as its first step and keeps improving; if the single step "
                "does better, the iterative attack is stuck (masked or noisy gradients, bad step sizes).",
                threat=key,
                actions=["restarts", "blackbox"] if verdict == "fail" else [],
                numbers={"fgsm_only": only, "worse_at": worse},
            )
        )
    else:
        out.append(Check("iterative-vs-single-step", "Iterative attacks beat single-step ones", "skipped", "no single-step attack (fgsm) is registered for this threat model.", "", threat=key))

    head = folds[-1]
    cascade = [m.attack for m in job.cascades[key]]
    black_in_cascade = [i for i, a in enumerate(cascade) if a.knowledge == "black"]
    if spec.knowledge == "white" and black_in_cascade and "blackbox_broken" not in audit:
        # a black-box member runs after the white-box ones: what it broke, they missed
        i = black_in_cascade[0]
        audit = {**audit, "blackbox_broken": mains[-1]["broken_by"] == i, "blackbox_attack": label(cascade[i]) + " (in the cascade)"}
    if "blackbox_broken" in audit:
        k = int(np.asarray(audit["blackbox_broken"]).sum())
        share = _share(k, n)
        verdict = "fail" if share > FAIL_SHARE else ("warn" if k else "pass")
        out.append(
            Check(
                "blackbox-vs-whitebox",
                "Black-box does not beat white-box",
                verdict,
                f"{audit['blackbox_attack']} at eps={spec.headline:g} broke {k} sample(s) ({_pct(share)}) that the white-box cascade left robust.",
                "A black-box attack knows strictly less than a white-box one; when it does better, the gradients the "
                "white-box attacks follow are misleading (gradient masking).",
                threat=key,
                actions=["blackbox", "restarts"] if verdict == "fail" else [],
                numbers={"broken": k},
            )
        )
    elif spec.knowledge == "white":
        out.append(Check("blackbox-vs-whitebox", "Black-box does not beat white-box", "skipped", "no black-box attack is registered for this threat model.", "", threat=key))

    if "convergence_broken" in audit:
        k = int(np.asarray(audit["convergence_broken"]).sum())
        tried = int(np.asarray(audit.get("convergence_tried", np.ones(n, dtype=bool))).sum())
        share = _share(k, n)
        verdict = "fail" if share > FAIL_SHARE else ("warn" if k else "pass")
        out.append(
            Check(
                "convergence",
                "More restarts do not keep lowering robust accuracy",
                verdict,
                f"{audit['convergence_attack']} (more restarts, new starts) at eps={spec.headline:g}, run on the {tried} sample(s) "
                f"left robust but near the boundary, broke {k} more ({_pct(share)}).",
                "If more effort keeps finding adversarial examples, the attack has not converged and the robust "
                "accuracy is an overestimate.",
                threat=key,
                actions=["restarts"] if verdict == "fail" else [],
                numbers={"broken": k, "tried": tried},
            )
        )

    tested = np.asarray(audit.get("binarization_tested", np.zeros(n, dtype=bool)))
    t = int(tested.sum())
    if t:
        f = int((np.asarray(audit["binarization_found"]) & tested).sum())
        rate = f / t
        verdict = "fail" if rate < BINARIZATION_PASS else ("warn" if f < t else "pass")
        out.append(
            Check(
                "binarization-test",
                "The attack finds planted adversarial examples",
                verdict,
                f"the cascade at eps={spec.headline:g}, run on the model with its head replaced by a binary one that has an "
                f"adversarial example planted inside the ball, found {f} of {t} ({_pct(rate)}; the test needs "
                f"{_pct(BINARIZATION_PASS)}).",
                "Every tested sample of the binarized model has an adversarial example inside the ball by construction; an "
                "attack that misses them is too weak for this model's features, so its robust accuracy on the real model "
                "is likely an overestimate (Zimmermann et al. 2022, arXiv:2206.13991).",
                threat=key,
                actions=["restarts", "blackbox"] if verdict == "fail" else [],
                numbers={"found": f, "tested": t, "rate": rate, "threshold": BINARIZATION_PASS},
            )
        )
    else:
        out.append(
            Check(
                "binarization-test", "The attack finds planted adversarial examples", "skipped",
                f"no sample could be tested: the model has no nn.Linear head, or none of the first {BINARIZATION_SAMPLES} "
                "samples is classified correctly with a head that separates the planted example.", "", threat=key,
            )
        )

    if "naive_robust" in audit:
        naive = float(np.asarray(audit["naive_robust"]).mean())
        adaptive_acc = float(head.robust.mean())
        gap = naive - adaptive_acc
        verdict = "fail" if gap > 0.1 else "pass"
        out.append(
            Check(
                "adaptive-vs-naive",
                "The defense's adaptive form is needed",
                verdict,
                f"{audit['naive_attack']} on the deployed model, naively, reports {_pct(naive)} robust accuracy at eps={spec.headline:g}; "
                f"attacked as the defense declares, it has {_pct(adaptive_acc)}."
                + (" The gap is gradient masking; the reported numbers come from the adaptive attack." if verdict == "fail" else ""),
                "A defense that only hides gradients looks robust to a naive attack; the honest number comes from an "
                "attack adapted to it (Athalye et al. 2018; Tramer et al. 2020).",
                threat=key,
                numbers={"naive_robust_accuracy": naive, "adaptive_robust_accuracy": adaptive_acc},
            )
        )

    if minimal is not None:
        norms = np.asarray(minimal["min_norm"])
        lower = [e for k, e in enumerate(spec.eps) if float((correct & (norms > e)).mean()) < raw_acc[k]]
        found = int((np.isfinite(norms) & correct).sum())
        verdict = "warn" if lower else "pass"
        out.append(
            Check(
                "minimal-vs-fixed",
                "Minimal-norm and fixed-budget attacks agree",
                verdict,
                f"{minimal['attack']} found adversarial examples for {found} of {int(correct.sum())} samples; the robust accuracy it implies is "
                + (f"below the cascade's at eps {', '.join(f'{e:g}' for e in lower)}." if lower else "never below the cascade's."),
                "Both attacks bound the same quantity; where the minimal-norm attack finds smaller perturbations than "
                "the fixed-budget cascade, the cascade missed adversarial examples (they are counted in the results).",
                threat=key,
                actions=["restarts"] if lower else [],
                numbers={"lower_at": lower, "found": found},
            )
        )
    return out


def escalation_actions(checks: list[Check]) -> list[str]:
    """The union of the actions the failed checks call for, in a fixed order."""
    wanted = {a for c in checks if c.verdict == "fail" for a in c.actions}
    return [a for a in ACTIONS if a in wanted]


__all__ += ["escalation_actions"]
