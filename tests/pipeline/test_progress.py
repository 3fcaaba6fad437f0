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
    assert any(x.startswith("user documents: 40/100 users (40%), ") for x in lines), lines
    assert lines[-1].startswith("user documents: 100/100 users (100%), ")
    assert "users/s" in lines[-1] and lines[-1].endswith(" left")
    assert not any("\r" in x or "|" in x for x in lines)  # one plain line per refresh, no bar


def test_nested_progress_logs_plain_lines(caplog):
    """A loop's counter inside another's (the matrix factorisation's half-steps within the
    collaborative models) logs its lines without the terminal's cursor moves."""
    caplog.set_level(logging.INFO, logger="pipeline")
    with progress("outer", 2, unit="folds", every_s=0.0) as outer:
        with progress("inner", 3, unit="steps", every_s=0.0) as inner:
            for _ in range(3):
                inner.update(1)
        outer.update(2)
    lines = [r.getMessage() for r in caplog.records]
    assert any(x.startswith("inner: 3/3 steps") for x in lines), lines
    assert any(x.startswith("outer: 2/2 folds") for x in lines), lines
    assert not any("\x1b" in x for x in lines), lines


def test_progress_waits_every_s_before_its_first_line(caplog):
    caplog.set_level(logging.INFO, logger="pipeline")
    with progress("gram", 10, unit="items", every_s=3600.0) as bar:
        bar.update(4)
        bar.update(6)
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("gram")] == []


def test_steps_time_each_step_and_report_memory(caplog):
    caplog.set_level(logging.INFO, logger="pipeline")
    steps = Steps()
    with steps.step("load"):
        pass
    assert set(steps.timings) == {"load"}
    done = caplog.records[-1].getMessage()
    assert done.startswith("load done in 0.0 s (this process: ") and "GiB at most" in done
