"""The `estimate` job kind: measure one fake-tensor training step for a request, cache the result.

    python trainer/run.py estimate --job-dir jobs/estimate-1   (params.json: {"key", "request"})

The request comes from state.train.estimates.request_for; the measurement is
trainer.train.fake_step.measure. A failure is cached too (as `error`), so the dashboard says why
instead of starting the same failing job again; a code change bumps estimates.VERSION.
"""
from __future__ import annotations

import traceback

from state.train import estimates


def job_estimate(ctx, args) -> str:
    request = ctx.params.get("request")
    if not isinstance(request, dict) or "settings" not in request:
        raise ValueError(f"{ctx.job_dir}/params.json has no estimate request; start it from the Train page "
                         "or write {\"request\": state.train.estimates.request_for(...)} there.")
    ctx.phase("estimate", 0, 1)
    result = measure_cached(request)
    ctx.phase("estimate", 1, 1, peak_allocated_mb=result.get("peak_allocated_mb"), error=result.get("error"))
    return "failed" if result.get("error") else "completed"


def measure_cached(request: dict) -> dict:
    """The cached result for `request`, measuring and caching it first when missing."""
    cached = estimates.read(request)
    if cached is not None:
        return cached
    from trainer.train.fake_step import measure

    try:
        result = measure(request)
    except Exception as exc:  # noqa: BLE001 - the cache must say why there is no estimate
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"}
    estimates.write(request, result)
    return {"request": request, **result}
