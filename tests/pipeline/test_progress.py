"""Progress of long steps: a log line with the rate and the time left when stderr is no terminal."""

from __future__ import annotations

import logging

from pipeline.progress import Steps, progress


def test_progress_logs_rate_and_time_left_when_not_a_terminal(caplog):
    caplog.set_level(logging.INFO, logger="pipeline")
    with progress("user documents", 100, unit="users", every_s=0.0) as bar:
        bar.update(40)
        bar.update(60)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("user documents: 40/100 users (40%), ") and "users/s" in lines[0]
    assert lines[-1].startswith("user documents: 100/100 users (100%)") and lines[-1].endswith(
        "0 s left"
    )


def test_steps_time_each_step_and_report_memory(caplog):
    caplog.set_level(logging.INFO, logger="pipeline")
    steps = Steps()
    with steps.step("load"):
        pass
    assert set(steps.timings) == {"load"}
    done = caplog.records[-1].getMessage()
    assert done.startswith("load done in 0.0 s (this process: ") and "GiB at most" in done
