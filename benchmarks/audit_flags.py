"""The audit checks of issue 16 on the standard CNN and on a gradient-masking variant.

For the standard CNN and the same CNN behind a 0.5 input threshold (piecewise constant: zero
gradients almost everywhere), ``advlab.evaluate`` with the default cascade at Linf 0.3 on the
first ``--samples`` images of the MNIST sample, no escalation: the verdicts and evidence of
batch-dependence, dlr-zero-gradient, autograd-in-inference and binarization-test
(Zimmermann et al. 2022, arXiv:2206.13991), and the binarization test's share of the
attacks' passes and seconds.  Then the binarization test alone on the seed MLP (Linf 0.1,
10 samples) under APGD, PGD, FGSM and a crippled PGD (1 step of 0.001).  ``--saved`` adds
saved model folders (e.g. the tests' cached FGSM-trained and distilled CNNs under
``.pytest_cache/d/advlab-models/``) to the evaluated victims.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/audit_flags.py --samples 50
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/audit_flags.py --samples 30 \
        --saved .pytest_cache/d/advlab-models/fgsm-cnn16 .pytest_cache/d/advlab-models/distilled-cnn8-T100
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

import advlab
from advlab.attacks import get_attack
from advlab.data import load_data
from advlab.evaluation import ThreatSpec
from advlab.evaluation.binarization import binarization_test
from advlab.models import load_model, trained_model
from advlab.threat import ThreatModel

NEW = ("batch-dependence", "dlr-zero-gradient", "autograd-in-inference", "binarization-test")


class Thresholded(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model((x > 0.5).float())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--saved", nargs="*", default=[], help="saved model folders to evaluate as well")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cnn = trained_model("cnn")
    victims: list[tuple[str, nn.Module]] = [("cnn", cnn), ("thresholded cnn", Thresholded(cnn))]
    victims += [(folder, load_model(folder)) for folder in args.saved]
    for name, model in victims:
        t0 = time.perf_counter()
        r = advlab.evaluate(model, "mnist-sample", samples=args.samples, batch_size=args.samples,
                            threats=[ThreatSpec("linf", (0.3,))], minimal=False, escalate=False)
        print(f"{name}: {time.perf_counter() - t0:.1f} s, robust accuracy {r.robust_accuracy(0.3):.2f}")
        for c in r.checks:
            if c["id"] in NEW:
                print(f"  {c['id']}: {c['verdict']} -- {c['evidence']}")
        cost = r.data["cost"]
        b = [row for row in cost["by_stage"] if row["stage"].endswith("audit: binarization")]
        if b:
            print(f"  binarization: {b[0]['forwards']} forward / {b[0]['backwards']} backward rows of {cost['forwards']} / "
                  f"{cost['backwards']}, {b[0]['seconds']:.2f} s of {cost['attack_seconds']:.2f} attack seconds")
    mlp = trained_model("seed-mlp")
    x = load_data("mnist-sample").x_test[:10]
    threat = ThreatModel(norm="linf", eps=0.1)
    for label, attack in (("apgd", get_attack("apgd")), ("pgd", get_attack("pgd")), ("fgsm", get_attack("fgsm")),
                          ("pgd 1 step of 0.001", get_attack("pgd", steps=1, step_size=0.001))):
        def run(m: nn.Module, xs: torch.Tensor, ys: torch.Tensor, a=attack):  # type: ignore[no-untyped-def]
            res = a(m, xs, ys, threat)
            return res.success, int(res.forwards.sum()), int(res.backwards.sum())

        got = binarization_test(mlp, x, threat, 0, run)
        assert got is not None
        print(f"seed MLP, {label}: found {got['found_count']} of {got['tested']} planted adversarial examples")


if __name__ == "__main__":
    main()
