"""The shuffled-label control's labels (serving/train_demo.py): uninformative in every stratum.

A plain permutation of breast labels is independent of the truth only in expectation; one draw
labels a few more or fewer of some lesion type as cancer, and a network that finds lesions easily
learns that. The balanced permutation gives every stratum (side x true lesion type x vendor) the
same share labelled cancer. These tests build the split's labels only: no pixels are needed.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest

from mammobeam.serving.train_demo import Split, label_association, shuffle_breast_labels

LESIONS = ("mass", "calcifications", "subtle_mass", "distortion", "occult")
PROFILES = ("alpha", "beta", "gamma", "delta")


@pytest.fixture(scope="module")
def split():
    """900 exams, two views of each breast, about 30% of breasts with a cancer of a drawn type."""
    rng = np.random.default_rng(5)
    rows = []
    for e in range(900):
        exam = f"1001{e + 1:06d}"
        for side in "LR":
            lesion = str(rng.choice(LESIONS)) if rng.random() < 0.3 else "none"
            for view in ("CC", "MLO"):
                rows.append((exam, side, view, lesion, PROFILES[e % 4]))
    n = len(rows)
    return Split(x=np.zeros((n, 1, 1, 1), np.float32),
                 y=np.array([r[3] != "none" for r in rows], np.float32),
                 sop=[f"{r[0]}.{r[1]}.{r[2]}" for r in rows], breast=[f"{r[0]}-{r[1]}" for r in rows],
                 exam=[r[0] for r in rows], lesion=[r[3] for r in rows], profile=[r[4] for r in rows],
                 inputs="", spec_version="pp-test")


@pytest.fixture(scope="module")
def sides(split):
    """Validation side: every fifth exam."""
    return np.array([int(e) % 5 == 0 for e in split.exam])


def per_breast(split, y):
    label = defaultdict(set)
    for b, v in zip(split.breast, y):
        label[b].add(float(v))
    return label


@pytest.mark.parametrize("balanced", [True, False])
def test_both_views_of_a_breast_keep_one_label_and_the_count_of_cancers_is_kept(split, sides, balanced):
    y = shuffle_breast_labels(split, 7, sides, balanced=balanced)
    label = per_breast(split, y)
    assert all(len(v) == 1 for v in label.values())
    shuffled = sum(v.pop() for v in label.values())
    true = sum(v.pop() for v in per_breast(split, split.y).values())
    assert abs(shuffled - true) <= 1
    assert not np.array_equal(y, split.y)


def test_balanced_labels_give_every_stratum_the_same_share_within_one_breast(split, sides):
    y = shuffle_breast_labels(split, 7, sides)
    p = split.y.reshape(-1, 2)[:, 0].mean()  # one row per breast: views come in pairs
    strata = defaultdict(list)
    for i in range(0, len(y), 2):
        strata[(bool(sides[i]), split.lesion[i], split.profile[i])].append(y[i])
    assert len(strata) == 2 * len(PROFILES) * (len(LESIONS) + 1)
    for stratum, labels in strata.items():
        assert abs(sum(labels) - p * len(labels)) <= 1.0, stratum


def test_balanced_labels_depend_on_the_seed_only(split, sides):
    first = shuffle_breast_labels(split, 7, sides)
    assert np.array_equal(first, shuffle_breast_labels(split, 7, sides))
    assert not np.array_equal(first, shuffle_breast_labels(split, 8, sides))


def test_plain_permutations_follow_the_truth_by_chance_and_balanced_ones_do_not(split, sides):
    keep = ~sides
    truth = label_association(split, split.y, keep)
    assert truth["visible_minus_normal"] == 1.0
    plain = [label_association(split, shuffle_breast_labels(split, s, sides, balanced=False), keep)
             for s in range(30)]
    balanced = [label_association(split, shuffle_breast_labels(split, s, sides), keep) for s in range(30)]
    plain_gap = np.array([a["visible_minus_normal"] for a in plain])
    balanced_gap = np.array([a["visible_minus_normal"] for a in balanced])
    # About 1,440 breasts, 30% cancer: a plain draw's gap has a standard deviation near 0.03.
    assert np.abs(plain_gap).max() > 0.04
    assert np.abs(balanced_gap).max() < 0.01
    p = split.y.reshape(-1, 2)[:, 0].mean()
    for a in balanced:
        for lesion, g in a["per_lesion_type"].items():  # one contiguous stratum run per side
            assert abs(g["labelled_cancer_share"] - p) <= 1 / g["breasts"] + 1e-4, lesion


def test_label_association_counts_each_kept_breast_once(split, sides):
    a = label_association(split, split.y, sides)
    assert a["breasts"] == len({b for b, s in zip(split.breast, sides) if s})
    counts = Counter(split.lesion[i] for i in range(0, len(split.y), 2) if sides[i])
    assert {k: v["breasts"] for k, v in a["per_lesion_type"].items()} == dict(counts)
    assert a["per_lesion_type"]["none"]["labelled_cancer_share"] == 0.0
    assert a["per_lesion_type"]["mass"]["labelled_cancer_share"] == 1.0
