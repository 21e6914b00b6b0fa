import copy

import numpy as np
import pytest
import torch
from torch import nn

from initbench.data.transforms import Normalize
from initbench.models.cnn import Encoder
from initbench.training import probes
from initbench.training.probes import encode, knn_accuracy, linear_probe, recalibrate_batchnorm
from initbench.training.setup import set_seed

CHANNELS = [4, 8, 8]
CPU = torch.device("cpu")
NORMALIZE = Normalize([0.5], [0.25])


def _images(n=40, seed=0, size=16):
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, size, size), generator=generator).to(torch.uint8)


def _norms(module):
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


@torch.no_grad()
def _inputs_of_each_norm(encoder, images):
    """What reaches each BatchNorm in an eval-mode forward pass (dropout off)."""
    seen = []
    hooks = [bn.register_forward_pre_hook(lambda _, x: seen.append(x[0])) for bn in _norms(encoder)]
    encoder.eval()
    encoder(NORMALIZE(images))
    for hook in hooks:
        hook.remove()
    return seen


@torch.no_grad()
def _block_output_stds(encoder, images, training):
    stds = []
    hooks = [
        b.register_forward_hook(lambda *a: stds.append(a[2].std().item())) for b in encoder.blocks
    ]
    encoder.train(training)
    encoder(NORMALIZE(images))
    for hook in hooks:
        hook.remove()
    return stds


def test_recalibrated_statistics_are_those_of_each_norms_inputs():
    set_seed(0)
    encoder = Encoder(1, CHANNELS, [0.5, 0.5, 0.5])  # dropout on during it would show
    for bn in _norms(encoder):  # a fresh encoder carries BatchNorm's defaults
        assert torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert torch.equal(bn.running_var, torch.ones_like(bn.running_var))
    weights = {k: v.clone() for k, v in encoder.named_parameters()}
    images = _images()
    recalibrate_batchnorm(encoder, NORMALIZE, images, CPU)
    # Reference by hand: with the new statistics in eval mode, each BatchNorm's input has
    # exactly the per-channel mean and (unbiased) variance that it stores.
    for bn, x in zip(_norms(encoder), _inputs_of_each_norm(encoder, images), strict=True):
        torch.testing.assert_close(bn.running_mean, x.mean(dim=(0, 2, 3)), rtol=0, atol=1e-3)
        torch.testing.assert_close(bn.running_var, x.var(dim=(0, 2, 3)), rtol=2e-3, atol=1e-5)
    for key, tensor in encoder.named_parameters():
        assert torch.equal(tensor, weights[key]), key
    assert not any(module.training for module in encoder.modules())


def test_recalibration_stops_random_encoder_outputs_shrinking_in_eval_mode():
    set_seed(0)
    encoder = Encoder(1, CHANNELS, [0.0, 0.0, 0.0])
    images = _images()
    train_stds = _block_output_stds(copy.deepcopy(encoder), images, training=True)
    before = _block_output_stds(encoder, images, training=False)
    assert before[-1] < 0.5 * train_stds[-1]  # the problem: eval outputs shrink per block
    recalibrate_batchnorm(encoder, NORMALIZE, images, CPU)
    after = _block_output_stds(encoder, images, training=False)
    assert after == pytest.approx(train_stds, rel=0.02)


def test_recalibration_is_seeded_and_keeps_the_momentum():
    set_seed(0)
    encoder = Encoder(1, CHANNELS, [0.3, 0.3, 0.3])
    twin = copy.deepcopy(encoder)
    recalibrate_batchnorm(encoder, NORMALIZE, _images(30), CPU, max_images=20)
    recalibrate_batchnorm(twin, NORMALIZE, _images(30), CPU, max_images=20)
    for bn, bn_twin in zip(_norms(encoder), _norms(twin), strict=True):
        assert torch.equal(bn.running_mean, bn_twin.running_mean)
        assert torch.equal(bn.running_var, bn_twin.running_var)
        assert bn.momentum == 0.1
    with pytest.raises(ValueError, match="at least one image"):
        recalibrate_batchnorm(encoder, NORMALIZE, _images(0), CPU)


def test_encode_flattens_eval_mode_features():
    set_seed(0)
    encoder = Encoder(1, CHANNELS, [0.5, 0.5, 0.5])
    images = _images(5)
    features = encode(encoder, NORMALIZE, images, CPU)
    assert features.shape == (5, 8 * 2 * 2) and features.dtype == np.float32
    encoder.eval()
    with torch.no_grad():
        expected = encoder(NORMALIZE(images)).flatten(1).numpy()
    np.testing.assert_allclose(features, expected, rtol=1e-6, atol=1e-6)
    # Eval mode: dropout off, so encoding twice gives the same features.
    np.testing.assert_array_equal(features, encode(encoder, NORMALIZE, images, CPU))


def _clusters(n_per_class=20, seed=0):
    """Two classes in 5 dimensions, separable along the first axis."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(2 * n_per_class, 5)).astype(np.float32)
    labels = np.repeat([0, 1], n_per_class)
    features[:, 0] += np.where(labels == 1, 6.0, -6.0)
    return features, labels


def test_knn_accuracy_separates_clusters_but_not_shuffled_labels():
    features, labels = _clusters()
    eval_features, eval_labels = _clusters(seed=1)
    assert knn_accuracy(features, labels, eval_features, eval_labels) == 1.0
    shuffled = np.random.default_rng(0).permutation(labels)
    assert knn_accuracy(features, shuffled, eval_features, eval_labels) < 0.9


def test_knn_accuracy_uses_cosine_distance():
    # Class 0 points lie far out along the x axis, class 1 points close to the origin on
    # the diagonal. (1, 0.05) is nearest class 1 in Euclidean distance, but points the way
    # class 0 does.
    rng = np.random.default_rng(0)
    far = np.column_stack([rng.uniform(9, 11, 5), rng.uniform(-0.1, 0.1, 5)])
    near = 0.7 + rng.uniform(-0.05, 0.05, (5, 2))
    train = np.concatenate([far, near]).astype(np.float32)
    labels = np.repeat([0, 1], 5)
    query = np.array([[1.0, 0.05]], dtype=np.float32)
    assert knn_accuracy(train, labels, query, np.array([0]), neighbors=3) == 1.0


def _capture_pipeline(monkeypatch):
    """Keep each scikit-learn pipeline that ``linear_probe`` builds, to read its fit."""
    made, original = [], probes.make_pipeline

    def make_pipeline(*steps):
        made.append(original(*steps))
        return made[-1]

    monkeypatch.setattr(probes, "make_pipeline", make_pipeline)
    return made


def test_linear_probe_is_one_affine_map_of_the_features(monkeypatch):
    made = _capture_pipeline(monkeypatch)
    rng = np.random.default_rng(0)
    train = rng.normal(size=(60, 6)) * [1, 2, 3, 4, 5, 6] + 10
    labels = rng.integers(0, 3, 60)
    test = rng.normal(size=(30, 6)) * [1, 2, 3, 4, 5, 6] + 10
    test_labels = rng.integers(0, 3, 30)
    result = linear_probe(train, labels, test, test_labels, Cs=[1.0], max_iter=1000)
    (pipeline,) = made
    scaler, classifier = pipeline[0], pipeline[-1]
    # The scaler standardizes with the train features' statistics: an affine map too.
    np.testing.assert_allclose(scaler.mean_, train.mean(axis=0))
    np.testing.assert_allclose(scaler.scale_, train.std(axis=0))
    weight = classifier.coef_ / scaler.scale_  # (classes, D)
    bias = classifier.intercept_ - weight @ scaler.mean_  # (classes,)
    predicted = classifier.classes_[np.argmax(test @ weight.T + bias, axis=1)]
    np.testing.assert_array_equal(pipeline.predict(test), predicted)
    assert result.accuracy == pytest.approx(np.mean(predicted == test_labels))


def test_linear_probe_learns_a_separable_problem_but_not_xor():
    features, labels = _clusters()
    test_features, test_labels = _clusters(seed=1)
    result = linear_probe(features, labels, test_features, test_labels, Cs=[1.0], max_iter=1000)
    assert result.accuracy == 1.0 and result.macro_f1 == 1.0 and result.converged
    # XOR of the signs of two features: one linear layer gets at most 3 of 4 quadrants.
    rng = np.random.default_rng(0)
    xor = np.concatenate([rng.normal(size=(25, 2)) * 0.2 + [a, b]
                          for a, b in [(2, 2), (-2, -2), (2, -2), (-2, 2)]])  # fmt: skip
    xor_labels = np.repeat([0, 0, 1, 1], 25)
    result = linear_probe(xor, xor_labels, xor, xor_labels, Cs=[1.0], max_iter=1000)
    assert result.accuracy <= 0.76


def test_linear_probe_reports_convergence_and_needs_two_classes():
    features, labels = _clusters()
    short = linear_probe(features, labels, features, labels, Cs=[100.0], max_iter=1)
    assert short.iterations == 1 and not short.converged
    with pytest.raises(ValueError, match="at least 2 classes"):
        linear_probe(features, np.zeros(len(features)), features, labels, Cs=[1.0], max_iter=10)


def _labelled_clusters(seed, n_per_class=12, classes=3, dim=6, spread=1.5):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 2, (classes, dim))
    labels = np.repeat(np.arange(classes), n_per_class)
    return centres[labels] + rng.normal(0, spread, (len(labels), dim)), labels


def test_cross_validation_chooses_C_from_the_labelled_subset_only():
    train, labels = _labelled_clusters(0)
    test, test_labels = _labelled_clusters(1)
    Cs = [0.001, 0.1, 10.0]
    result = linear_probe(train, labels, test, test_labels, Cs=Cs, max_iter=500, seed=0)
    assert result.C in Cs and result.cv_folds == 5
    # Poisoned test labels change the test score, never the choice of C.
    poisoned = linear_probe(train, labels, test, (test_labels + 1) % 3, Cs=Cs, max_iter=500,
                            seed=0)  # fmt: skip
    assert (poisoned.C, poisoned.cv_folds) == (result.C, result.cv_folds)
    assert poisoned.predictions.tolist() == result.predictions.tolist()
    # It is what scikit-learn's own search on the train features picks.
    from sklearn.model_selection import GridSearchCV, StratifiedKFold

    search = GridSearchCV(probes._probe(1.0, 500), {"logisticregression__C": Cs},
                          cv=StratifiedKFold(5, shuffle=True, random_state=0)).fit(train, labels)  # fmt: skip
    assert search.best_params_["logisticregression__C"] == result.C


def test_cross_validation_folds_shrink_to_the_smallest_class_and_stop_below_two():
    train, labels = _labelled_clusters(0, n_per_class=3)
    result = linear_probe(train, labels, train, labels, Cs=[0.1, 1.0, 10.0], max_iter=200)
    assert result.cv_folds == 3
    one_each = linear_probe(train[::3], labels[::3], train, labels, Cs=[0.1, 1.0, 10.0],
                            max_iter=200)  # fmt: skip
    assert (one_each.cv_folds, one_each.C) == (0, 1.0)  # the grid's middle
    single = linear_probe(train, labels, train, labels, Cs=[0.5], max_iter=200)
    assert (single.cv_folds, single.C) == (0, 0.5)
