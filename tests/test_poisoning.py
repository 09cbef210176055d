"""Poisoning: label flipping, BadNets backdoors and feature-collision poisons feed the ordinary
training loop; reports measure clean accuracy, the attacked class and attack success."""

from __future__ import annotations

import pytest
import torch

from advlab.models import DEFAULT_TRAINING, TrainConfig, accuracy, build_model
from advlab.poisoning import (
    BadNets,
    FeatureCollision,
    LabelFlip,
    fine_tune,
    penultimate,
    poison_report,
    train_poisoned,
)


def test_label_flip_random_and_targeted(mnist):
    data = LabelFlip(rate=0.3, seed=1).poison(mnist)
    changed = data.dataset.y_train != mnist.y_train
    assert torch.equal(changed, data.poisoned)  # every chosen row gets a *different* label
    assert abs(data.rate - 0.3) < 0.001
    assert torch.equal(data.dataset.x_train, mnist.x_train) and torch.equal(data.dataset.y_test, mnist.y_test)
    flip = LabelFlip(rate=0.5, source=7, target=1).poison(mnist)
    sevens = mnist.y_train == 7
    assert bool((flip.dataset.y_train[flip.poisoned] == 1).all()) and bool(sevens[flip.poisoned].all())
    assert int(flip.poisoned.sum()) == round(0.5 * int(sevens.sum()))
    assert torch.equal(LabelFlip(rate=0.3, seed=1).poison(mnist).dataset.y_train, data.dataset.y_train)
    assert not LabelFlip(rate=0.0).poison(mnist).poisoned.any()
    with pytest.raises(ValueError, match="rate"):
        LabelFlip(rate=1.5)
    with pytest.raises(ValueError, match="target"):
        LabelFlip(source=3)


def test_badnets_trigger_stamping(mnist):
    bd = BadNets(target=0, rate=0.05, trigger="pattern", size=4)
    x = mnist.x_test[:3]
    t = bd.stamp(x)
    assert torch.equal(t[:, :, :23, :], x[:, :, :23, :]) and torch.equal(t[:, :, :, :23], x[:, :, :, :23])
    assert float(t[:, :, 23:27, 23:27].sum()) == 3 * 8.0  # checkerboard: 8 bright pixels
    data = bd.poison(mnist)
    assert abs(data.rate - 0.05) < 0.001
    assert bool((data.dataset.y_train[data.poisoned] == 0).all())
    assert bool((mnist.y_train[data.poisoned] != 0).all())  # taken from other classes
    custom = BadNets(trigger=[[1.0, float("nan")], [float("nan"), 1.0]], margin=0, position="top-left").stamp(torch.zeros(1, 1, 5, 5))
    assert custom[0, 0, 0, 0] == 1 and custom[0, 0, 0, 1] == 0 and custom[0, 0, 1, 1] == 1
    with pytest.raises(ValueError, match="trigger"):
        BadNets(trigger="star")


def test_badnets_backdoor_on_the_seed_mlp(mnist):
    # 5% poisoned training data: the trigger works and clean accuracy stays within 2 points of
    # the same network trained (same seed, same loop) on the clean data.
    config = TrainConfig(**dict(DEFAULT_TRAINING["seed-mlp"], epochs=12))
    clean, _ = train_poisoned(LabelFlip(rate=0.0).poison(mnist), lambda: build_model("seed-mlp"), config)
    data = BadNets(target=0, rate=0.05).poison(mnist)
    _, report = train_poisoned(data, lambda: build_model("seed-mlp"), config, reference=clean)
    assert report.attack_success >= 0.95, report
    assert report.clean_accuracy >= report.reference_accuracy - 0.02, report
    assert report.to_dict()["poison_rate"] == pytest.approx(0.05, abs=1e-3)


def test_feature_collision_poisons_keep_labels_and_collide(cnn, mnist):
    before_weights = {k: v.clone() for k, v in cnn.state_dict().items()}
    fc = FeatureCollision(target_index=1, base_class=(int(mnist.y_test[1]) + 1) % 10, poisons=50)
    data = fc.poison(cnn, mnist)
    rows = data.poisoned
    assert int(rows.sum()) == 50 and torch.equal(data.dataset.y_train, mnist.y_train)  # clean labels
    with torch.no_grad():
        f_t = penultimate(cnn, mnist.x_test[1:2])
        before = (penultimate(cnn, mnist.x_train[rows]) - f_t).norm(dim=1).mean()
        after = (penultimate(cnn, data.dataset.x_train[rows]) - f_t).norm(dim=1).mean()
    assert after < 0.3 * before
    tuned = fine_tune(cnn, data, TrainConfig(epochs=10))
    report = poison_report(tuned, data, reference=cnn)
    assert report.attack_success == 1.0, report  # the target instance now reads as the base class
    assert report.clean_accuracy >= report.reference_accuracy - 0.02
    assert accuracy(cnn, mnist.x_test[1:2], mnist.y_test[1:2]) == 1.0
    assert all(torch.equal(v, before_weights[k]) for k, v in cnn.state_dict().items())  # fine_tune works on a copy


def test_feature_collision_hard_budget_keeps_poisons_near_their_bases(cnn, mnist):
    bases = mnist.x_train[mnist.y_train == 4][:5]
    poisons = FeatureCollision(eps=0.1, steps=20).craft(cnn, bases, mnist.x_test[1:2])
    assert float((poisons - bases).abs().max()) <= 0.1 + 1e-6
    assert float(poisons.min()) >= 0 and float(poisons.max()) <= 1
