"""The pipeline's progress lines for long per-gene stages."""

from __future__ import annotations

import expredict.pipeline as pipeline
from expredict.pipeline import Progress


def test_progress_logs_rate_and_time_left_then_a_final_line(monkeypatch):
    clock = iter([0.0, 10.0, 20.0, 30.0, 40.0])  # start, then one reading per finished item
    monkeypatch.setattr(pipeline.time, "perf_counter", lambda: next(clock))
    lines: list[str] = []
    p = Progress(lines.append, "[enet] enet: genes fitted", total=4, every=15.0)
    for _ in range(4):
        p.step()
    # 10 s: under 15 s since the start, silent; 20 s: a line; 30 s: 10 s since it, silent; 40 s: the end
    assert lines == [
        "[enet] enet: genes fitted: 2/4, 10.0 s each, about 0.3 min left",
        "[enet] enet: genes fitted: 4/4 in 40.0 s (10.0 s each)",
    ]


def test_progress_with_nothing_to_do_logs_nothing():
    lines: list[str] = []
    Progress(lines.append, "x", total=0)
    assert lines == []
