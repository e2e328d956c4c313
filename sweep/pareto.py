"""Constraints and the Pareto front of sweep points (pure functions on result rows)."""

from __future__ import annotations

import math


def _value(row: dict, metric: str) -> float | None:
    value = row.get(metric)
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return None
    return float(value)


def feasible(row: dict, constraints) -> bool:
    """Inside every bound (a metric the point lacks fails the constraint)."""
    for constraint in constraints:
        value = _value(row, constraint.metric)
        if value is None:
            return False
        if constraint.min is not None and value < constraint.min:
            return False
        if constraint.max is not None and value > constraint.max:
            return False
    return True


def violations(row: dict, constraints) -> list[float]:
    """Optuna's convention: one number per constraint, <= 0 when it holds."""
    out = []
    for constraint in constraints:
        value = _value(row, constraint.metric)
        if value is None:
            out.append(math.inf)
            continue
        worst = -math.inf
        if constraint.min is not None:
            worst = max(worst, constraint.min - value)
        if constraint.max is not None:
            worst = max(worst, value - constraint.max)
        out.append(worst)
    return out


def _costs(row: dict, objectives) -> tuple[float, ...] | None:
    """Objective values as costs (lower is better), None when one is missing."""
    costs = []
    for objective in objectives:
        value = _value(row, objective.metric)
        if value is None:
            return None
        costs.append(-value if objective.goal == "max" else value)
    return tuple(costs)


def dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    """``a`` is no worse than ``b`` in every objective and better in one (costs)."""
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_front(rows: list[dict], objectives, constraints=()) -> list[dict]:
    """The non-dominated rows among the successful, feasible ones with every objective.

    Sorted by the costs (the first objective's best first); equal costs all stay.
    Rows are scanned in that order, so each is compared with the front so far only."""
    candidates = []
    for row in rows:
        if row.get("status") != "ok" or not feasible(row, constraints):
            continue
        costs = _costs(row, objectives)
        if costs is not None:
            candidates.append((costs, row))
    candidates.sort(key=lambda item: item[0])
    front: list[tuple[tuple[float, ...], dict]] = []
    for costs, row in candidates:
        # earlier rows are lexicographically no worse, so none of them can be dominated by this one
        if not any(dominates(other, costs) for other, _ in front):
            front.append((costs, row))
    return [row for _, row in front]
