"""One logging setup (console + run log file) and the progress helper for long per-gene loops."""

from __future__ import annotations

import logging

import pytest

import expredict.logs as logs
from expredict.logs import Progress, configure_logging

LOGGER = "expredict.test_logs"


@pytest.fixture(autouse=True)
def _restore_package_logger():
    """Leave the ``expredict`` logger as it was: no handler from these tests leaks into others."""
    pkg = logging.getLogger("expredict")
    handlers, level, propagate = list(pkg.handlers), pkg.level, pkg.propagate
    yield
    for h in list(pkg.handlers):
        if h not in handlers:
            pkg.removeHandler(h)
            h.close()
    pkg.setLevel(level)
    pkg.propagate = propagate


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def test_progress_logs_rate_and_time_left_then_a_final_line(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock = iter([0.0, 10.0, 20.0, 30.0, 40.0])  # start, then one reading per finished item
    monkeypatch.setattr(logs.time, "perf_counter", lambda: next(clock))
    with Progress(logging.getLogger(LOGGER), "[enet] enet: genes fitted", total=4, every=15.0, bar=False) as p:
        for _ in range(4):
            p.step()
    # 10 s: under 15 s since the start, silent; 20 s: a line; 30 s: 10 s since it, silent; 40 s: the end
    assert _lines(caplog) == [
        "[enet] enet: genes fitted: 2/4, 10.0 s each, about 0.3 min left",
        "[enet] enet: genes fitted: 4/4 in 40.0 s (10.0 s each)",
    ]
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == LOGGER)


def test_progress_steps_of_several_items_and_counters(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock = iter([0.0, 40.0, 60.0])
    monkeypatch.setattr(logs.time, "perf_counter", lambda: next(clock))
    p = Progress(logging.getLogger(LOGGER), "embed", total=10, bar=False)
    p.set_postfix(cached=3)
    p.step(4)
    p.step(6)
    p.close()
    assert _lines(caplog) == [
        "embed: 4/10, 10.0 s each, about 1.0 min left (cached 3)",
        "embed: 10/10 in 60.0 s (6.0 s each) (cached 3)",
    ]


def test_progress_with_an_unknown_total_logs_the_final_line_on_close(monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    clock = iter([0.0, 1.0, 2.0, 3.0])
    monkeypatch.setattr(logs.time, "perf_counter", lambda: next(clock))
    with Progress(logging.getLogger(LOGGER), "enformer: genes", total=None, bar=False) as p:
        p.step()
        p.step()
    assert _lines(caplog) == ["enformer: genes: 2 in 3.0 s (1.5 s each)"]


def test_progress_with_nothing_to_do_or_disabled_logs_nothing(caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    log = logging.getLogger(LOGGER)
    Progress(log, "x", total=0).close()
    with Progress(log, "y", total=3, every=0.0, enabled=False, bar=False) as p:
        for _ in range(3):
            p.step()
    assert _lines(caplog) == []


def test_off_a_terminal_there_is_no_bar(capsys, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    with Progress(logging.getLogger(LOGGER), "x", total=2) as p:  # pytest's stderr is not a terminal
        assert p._bar is None
        p.step(2)
    assert "x: 2/2 in" in _lines(caplog)[-1]
    assert "%|" not in capsys.readouterr().err


def test_on_a_terminal_a_bar_replaces_the_intermediate_lines(capsys, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    with Progress(logging.getLogger(LOGGER), "embed", total=3, every=0.0, bar=True, unit="seq") as p:
        for _ in range(3):
            p.step()
    lines = _lines(caplog)
    assert len(lines) == 1 and lines[0].startswith("embed: 3/3 in")
    assert "3/3" in capsys.readouterr().err  # the tqdm bar


def test_a_module_warning_reaches_the_log_file(tmp_path, capsys, caplog):
    log_file = tmp_path / "logs" / "run.log"  # parent created
    configure_logging(log_file=log_file)
    logging.getLogger("expredict.cohort").warning("REF mismatches on %s: %d (skipped)", "chr22", 3)
    logging.getLogger("expredict.cohort").debug("not at INFO level")
    text = log_file.read_text()
    assert text.count("\n") == 1
    assert " WARNING expredict.cohort: REF mismatches on chr22: 3 (skipped)" in text
    assert capsys.readouterr().err == "REF mismatches on chr22: 3 (skipped)\n"  # console: message only
    assert [r.getMessage() for r in caplog.records] == ["REF mismatches on chr22: 3 (skipped)"]  # still propagates
    logging.getLogger("other").warning("outside the package")
    assert "outside" not in log_file.read_text()


def test_configure_logging_twice_writes_each_line_once(tmp_path, capsys):
    first, second = tmp_path / "a.log", tmp_path / "b.log"
    root_handlers = list(logging.getLogger().handlers)
    configure_logging(log_file=first)
    configure_logging(log_file=first)
    logging.getLogger("expredict.demo").info("once")
    assert first.read_text().count("once") == 1
    assert capsys.readouterr().err == "once\n"
    configure_logging(log_file=second)  # the first file is no longer written
    logging.getLogger("expredict.demo").info("twice")
    assert "twice" not in first.read_text() and second.read_text().count("twice") == 1
    configure_logging()  # console only, appended file kept
    logging.getLogger("expredict.demo").info("thrice")
    assert "thrice" not in second.read_text()
    assert capsys.readouterr().err == "twice\nthrice\n"
    assert len(logging.getLogger("expredict").handlers) == 1
    assert logging.getLogger().handlers == root_handlers  # the root logger is left alone


def test_configure_logging_level(tmp_path, capsys):
    configure_logging(logging.WARNING, tmp_path / "w.log")
    logging.getLogger("expredict.embed.run").info("hidden")
    logging.getLogger("expredict.embed.run").warning("shown")
    assert capsys.readouterr().err == "shown\n"
    assert "hidden" not in (tmp_path / "w.log").read_text()
