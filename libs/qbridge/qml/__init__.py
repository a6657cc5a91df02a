"""Quantum machine learning: a fidelity quantum kernel against a classical baseline."""

from qbridge.qml.kernel import (
    ClassificationReport,
    KernelSettings,
    ModelScores,
    cross_validate,
    feature_map,
    fidelity_kernel,
    quantum_kernel,
    statevectors,
    stratified_folds,
)

__all__ = [
    "ClassificationReport",
    "KernelSettings",
    "ModelScores",
    "cross_validate",
    "feature_map",
    "fidelity_kernel",
    "quantum_kernel",
    "statevectors",
    "stratified_folds",
]
