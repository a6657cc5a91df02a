"""Supervised classification of a small tabular dataset (quantum kernel vs classical baseline).

Unlike the optimization types, a classification job has no QUBO: its quantum
route is a fidelity quantum kernel with one qubit per feature
(:mod:`qbridge.qml`), its classical route an RBF-kernel SVC. Both are scored by
stratified cross-validation. The "assignment" of this type is the vector of
out-of-fold predicted labels, one per sample; its objective is the accuracy of
those predictions (maximized), so any answer can be re-checked classically like
every other problem type.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from qbridge.errors import InvalidProblemError, NotEligibleError, ProblemTooLargeError
from qbridge.problems._validation import as_float_list, as_int, as_sequence, check_payload
from qbridge.problems.base import Evaluation, Problem, QuboEncoding, Sense

logger = logging.getLogger(__name__)

MAX_SAMPLES = 200
"""Most samples per job: the kernel is a dense ``n x n`` fidelity matrix per fold."""
MAX_FEATURES = 8
"""Most features per job: one qubit each; the statevectors are dense (2^8 amplitudes)."""
MIN_FOLDS = 2
MAX_FOLDS = 10
DEFAULT_FOLDS = 5


@dataclass(frozen=True)
class Classification(Problem):
    """A labelled dataset to classify, scored by stratified cross-validation.

    Normalization: features as tuples of floats (``-0.0`` as ``0.0``), labels as
    ints; the sample order is kept (it is part of the fold split).

    Attributes:
        features: ``features[i]`` are the ``d`` feature values of sample ``i``
            (``1 <= d <= 8``, ``n <= 200`` samples).
        labels: Integer class label of each sample (at least two classes).
        folds: Cross-validation folds (2..10); every class needs at least this
            many samples.
    """

    kind: ClassVar[str] = "classification"
    sense: ClassVar[Sense] = Sense.MAXIMIZE

    features: tuple[tuple[float, ...], ...]
    labels: tuple[int, ...]
    folds: int = DEFAULT_FOLDS

    def __post_init__(self) -> None:
        rows = as_sequence(self.features, "features")
        labels = as_sequence(self.labels, "labels")
        folds = as_int(self.folds, "folds", minimum=MIN_FOLDS)
        if folds > MAX_FOLDS:
            raise InvalidProblemError(f"must be <= {MAX_FOLDS}, got {folds}", field="folds")
        if len(rows) > MAX_SAMPLES:
            raise ProblemTooLargeError(
                f"{len(rows)} samples exceed the limit {MAX_SAMPLES}", field="features"
            )
        if not rows:
            raise InvalidProblemError("must have at least one sample", field="features")
        width = len(as_sequence(rows[0], "features[0]"))
        if width > MAX_FEATURES:
            raise ProblemTooLargeError(
                f"{width} features exceed the limit {MAX_FEATURES}", field="features[0]"
            )
        if width < 1:
            raise InvalidProblemError("must have at least one feature", field="features[0]")
        features = tuple(
            as_float_list(row, f"features[{i}]", length=width) for i, row in enumerate(rows)
        )
        if len(labels) != len(features):
            raise InvalidProblemError(
                f"has {len(labels)} labels for {len(features)} samples", field="labels"
            )
        ys = tuple(as_int(v, f"labels[{i}]") for i, v in enumerate(labels))
        counts: dict[int, int] = {}
        for v in ys:
            counts[v] = counts.get(v, 0) + 1
        if len(counts) < 2:
            raise InvalidProblemError("needs at least two classes", field="labels")
        smallest = min(counts, key=lambda c: (counts[c], c))
        if counts[smallest] < folds:
            raise InvalidProblemError(
                f"class {smallest} has {counts[smallest]} samples, fewer than the {folds} folds",
                field="labels",
            )
        object.__setattr__(self, "features", features)
        object.__setattr__(self, "labels", ys)
        object.__setattr__(self, "folds", folds)

    @property
    def num_variables(self) -> int:
        """One predicted label per sample."""
        return len(self.labels)

    @property
    def num_features(self) -> int:
        """Features per sample (qubits of the feature map)."""
        return len(self.features[0])

    @property
    def classes(self) -> tuple[int, ...]:
        """The distinct labels, sorted."""
        return tuple(sorted(set(self.labels)))

    def num_qubits(self) -> int:
        """One qubit per feature (the kernel's feature map), not a QUBO size."""
        return self.num_features

    def evaluate(self, assignment: Sequence[int]) -> Evaluation:
        """Accuracy of predicted labels (one per sample); every prediction is feasible.

        Raises:
            InvalidProblemError: Wrong length, or a value that is not a known class.
        """
        if len(assignment) != len(self.labels):
            raise InvalidProblemError(
                f"has {len(assignment)} values, expected {len(self.labels)}", field="assignment"
            )
        known = set(self.labels)
        correct = 0
        for i, (pred, true) in enumerate(zip(assignment, self.labels, strict=True)):
            value = as_int(pred, f"assignment[{i}]")
            if value not in known:
                raise InvalidProblemError(
                    f"{value} is not a class of this dataset", field=f"assignment[{i}]"
                )
            correct += value == true
        return Evaluation(objective=correct / len(self.labels), feasible=True)

    def to_qubo(self) -> QuboEncoding:
        """Not applicable.

        Raises:
            NotEligibleError: Always: classification runs on a quantum kernel, not QAOA.
        """
        raise NotEligibleError(
            "classification has no QUBO encoding: it runs on the quantum-kernel solver"
        )

    def to_dict(self) -> dict[str, Any]:
        """``{"features": [[...], ...], "labels": [...], "folds": k}``."""
        return {
            "features": [list(row) for row in self.features],
            "labels": list(self.labels),
            "folds": self.folds,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Classification:
        """Build from ``{"features": [[...], ...], "labels": [...], "folds": k}``.

        Raises:
            InvalidProblemError: With the field path of the first invalid value;
                :class:`ProblemTooLargeError` above 200 samples or 8 features.
        """
        check_payload(data, required=("features", "labels"), optional=("folds",))
        return cls(
            features=data["features"],
            labels=data["labels"],
            folds=data.get("folds", DEFAULT_FOLDS),
        )
