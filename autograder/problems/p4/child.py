"""P4 on the child's side: the counterexample's callables, evaluated where the grader asks.

Runs in the untrusted child (copied there by the sandbox with the child runtime): imports only
the standard library, numpy and the child runtime.
"""
from __future__ import annotations

import numpy as np

from ...child import codec
from ...child.harness import _bad, _plain_scalar, harness, real_or_none


@harness("p4_counterexample")
def p4_counterexample(child, *, x1=()):
    """Call ``counterexample()`` and evaluate its ``mu2`` and ``sigma2`` at each point of x1, one
    Python float at a time (the promised interface is float -> float).

    Returns {"type": description of the returned value, "mapping": whether it is a dict (a dict
    subclass such as OrderedDict too), "keys": its keys (strings) when a dict,
    "mu1"/"sigma1": {"value": v} or {"unsupported": ...} or {"missing": True},
    "mu2"/"sigma2": {"values": float64 array, one per x1} or {"bad": {"x1", "got", "type"}} for
    the first value that is not a real number, or {"not_callable": description}, or
    {"missing": True}}. Finiteness and sigma2 > 0 are judged by the grader."""
    make = child.function("p4_autoregressive", "counterexample")
    model = child.invoke(make, (), {}, label="counterexample()")
    answer = {"type": codec.describe(model), "mapping": isinstance(model, dict), "keys": []}
    if not answer["mapping"]:
        return answer
    answer["keys"] = [str(key)[:40] for key in model][:20]
    points = [float(v) for v in np.asarray(x1, dtype=np.float64).reshape(-1)]
    for name in ("mu1", "sigma1"):
        answer[name] = _plain_scalar(model[name]) if name in model else {"missing": True}
    for name in ("mu2", "sigma2"):
        if name not in model:
            answer[name] = {"missing": True}
            continue
        function = model[name]
        if not callable(function):
            answer[name] = {"not_callable": codec.describe(function)}
            continue
        values = np.empty(len(points))
        for index, point in enumerate(points):
            value = child.invoke(function, (point,), {}, label=f"counterexample()['{name}']({point!r})")
            real = real_or_none(value)
            if real is None:
                answer[name] = {"bad": {"x1": point, **_bad(value)}}
                break
            values[index] = real
        else:
            answer[name] = {"values": values}
    return answer


