"""Certified robustness beside the attacks: lower bounds where attacks give upper bounds.

- :func:`certify` / :func:`certified_radius`: IBP (Gowal et al. 2018, arXiv:1810.12715) and
  CROWN (Zhang et al. 2018, arXiv:1811.00866) bounds on the logit margins over Linf and L2
  balls intersected with the input box, for chains of Linear, Conv2d, ReLU, Sigmoid, Tanh,
  BatchNorm (evaluation mode), Flatten, AvgPool2d and MaxPool2d layers;
  :func:`supports` says whether a model is such a chain, and if not why.
- :func:`smoothed_certify` / :func:`smoothed_predict`: randomized smoothing for L2 (Cohen et
  al. 2019, arXiv:1902.02918) with Clopper-Pearson confidence bounds; the defense wrapper is
  :class:`advlab.defenses.RandomizedSmoothing` and the attack on it ``smoothadv``.
- :func:`certified_train`: IBP training with an eps ramp and the kappa mixing (Gowal et al.
  2018), ``advlab train MODEL --certified ibp --eps E``.

This package sits beside the attacks: it uses the models, the threat model and the input
checks, and nothing above them.
"""

from advlab.certify.bounds import METHODS, InputSet, interval_bounds, margin_bounds, margin_spec
from advlab.certify.bracket import (
    applies,
    certified_flags,
    certified_radii,
    radius_bracket,
    sample_status,
)
from advlab.certify.certificates import NORMS, CertifiedResult, certified_radius, certify
from advlab.certify.network import SUPPORTED, as_chain, supports
from advlab.certify.smoothing import (
    ABSTAIN,
    SmoothedCertificate,
    clopper_pearson_lower,
    smoothed_certify,
    smoothed_predict,
)
from advlab.certify.training import CertifiedTraining, certified_train, ibp_loss

__all__ = [
    "ABSTAIN",
    "applies",
    "certified_flags",
    "certified_radii",
    "radius_bracket",
    "sample_status",
    "CertifiedTraining",
    "certified_train",
    "ibp_loss",
    "SmoothedCertificate",
    "clopper_pearson_lower",
    "smoothed_certify",
    "smoothed_predict",
    "METHODS",
    "NORMS",
    "SUPPORTED",
    "CertifiedResult",
    "InputSet",
    "as_chain",
    "certified_radius",
    "certify",
    "interval_bounds",
    "margin_bounds",
    "margin_spec",
    "supports",
]
