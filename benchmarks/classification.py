"""B10: a classifier's single-row answer (class and probabilities) against LightGBM's own predict.

The binary ``demo_late`` classifier is trained on five days of the synthetic stream; then one
row at a time, mlpipeline's predictor (validation, derived features, the one-row fast path,
the threshold, the class and both probabilities) is timed against ``Booster.predict`` on the
same row's ready-made matrix, which returns only the positive probability. Run alone with
``PYTHONPATH=. .venv/bin/python -m benchmarks.classification``; ``make bench`` includes it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from benchmarks.serving import per_call_us, records_of, setup
from mlpipeline.featuresets import portable
from mlpipeline.serving.predictor import open_predictor

__all__ = ["single_row"]


def single_row(home: Path, n: int = 3000) -> dict[str, float]:
    """µs per call: mlpipeline's class and probabilities, and the raw booster's probability."""
    settings, name, frame = setup(home, None, "demo_late")
    records = records_of(frame)
    with open_predictor(settings, name, log_predictions=False) as predictor:
        serving = predictor.current()
        booster = serving.model.model
        rows = [
            np.array(portable.build_matrix(serving.model.spec, {c: [r[c]] for c in frame.columns}))
            for r in records
        ]
        k = len(records)
        answer = predictor.predict_records(records[0])
        assert answer.labels is not None
        assert answer.probabilities is not None
        ours = per_call_us(lambda i: predictor.predict_records(records[i % k]), n)
        anchor = per_call_us(lambda i: booster.predict(rows[i % k]), n)
    return {"ours": ours, "raw": anchor}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mlpipeline-bench-") as tmp:
        r = single_row(Path(tmp))
    print("B10 classifier, single row: class + probabilities vs Booster.predict (µs per call)")
    ratio = r["ours"] / r["raw"]
    print(f"  mlpipeline {r['ours']:.1f}   raw booster {r['raw']:.1f}   ratio {ratio:.2f} (target <= 1.3)")


if __name__ == "__main__":
    main()
