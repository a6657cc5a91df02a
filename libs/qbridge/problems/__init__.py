"""Problem model: validated, normalized problem types and their QUBO encodings."""

from qbridge.problems.base import Evaluation, Problem, QuboEncoding, Sense
from qbridge.problems.classification import Classification
from qbridge.problems.knapsack import Knapsack
from qbridge.problems.limits import Limits, check_limits
from qbridge.problems.maxcut import MaxCut
from qbridge.problems.portfolio import Portfolio
from qbridge.problems.qubo import Qubo
from qbridge.problems.qubo_problem import IsingProblem, QuboProblem
from qbridge.problems.registry import PROBLEM_TYPES, problem_from_dict
from qbridge.problems.scheduling import JobShop, Operation

__all__ = [
    "PROBLEM_TYPES",
    "Classification",
    "Evaluation",
    "IsingProblem",
    "JobShop",
    "Knapsack",
    "Limits",
    "MaxCut",
    "Operation",
    "Portfolio",
    "Problem",
    "Qubo",
    "QuboEncoding",
    "QuboProblem",
    "Sense",
    "check_limits",
    "problem_from_dict",
]
