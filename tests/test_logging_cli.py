"""The CLI's global flags (--version, -v / -q, --no-progress), the logging set-up, progress bars that leave
printed output intact, and no print() in library modules."""

import ast
import io
import logging
import os
import pathlib

import pytest

import supcomp
from supcomp.cli import main
from supcomp.utils import progress
from supcomp.utils.log import configure_logging, verbosity_level

ROOT = pathlib.Path(supcomp.__file__).parent


@pytest.fixture(autouse=True)
def _restore_supcomp_logger():
    """main() configures the ``supcomp`` logger; later tests get it back as it was."""
    logger = logging.getLogger("supcomp")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:] = saved[0]
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"supcomp {supcomp.__version__}"


def test_version_verbose_shows_build_info_where_present(capsys, monkeypatch):
    monkeypatch.setattr(supcomp, "build_info", lambda: {"compiler": "test-cc"}, raising=False)
    with pytest.raises(SystemExit):
        main(["--version", "-v"])
    assert capsys.readouterr().out.splitlines() == [f"supcomp {supcomp.__version__}", "compiler: test-cc"]


@pytest.mark.parametrize(
    "flags,level", [([], logging.WARNING), (["-v"], logging.INFO), (["-vv"], logging.DEBUG), (["-q"], logging.ERROR)]
)
def test_verbosity_flags_set_the_log_level(flags, level, capsys):
    assert main([*flags, "info"]) == 0
    logger = logging.getLogger("supcomp")
    assert logger.level == level
    assert len([h for h in logger.handlers if h.get_name() == "supcomp-cli"]) == 1  # one handler, not one per call
    assert "supcomp" in capsys.readouterr().out  # the info table still goes to stdout


def test_log_records_go_to_stderr(capsys):
    configure_logging(verbosity_level(verbose=1))
    logging.getLogger("supcomp.tms.train").info("hello %d", 3)
    logging.getLogger("supcomp.tms.train").debug("not shown")
    out = capsys.readouterr()
    assert out.out == "" and out.err == "INFO supcomp.tms.train: hello 3\n"


def test_no_progress_turns_every_bar_off(monkeypatch):
    monkeypatch.delenv("SUPCOMP_NO_PROGRESS", raising=False)
    try:
        assert main(["--no-progress", "info"]) == 0
        assert not progress.progress_enabled() and os.environ["SUPCOMP_NO_PROGRESS"] == "1"
    finally:
        progress.set_progress_enabled(True)
        os.environ.pop("SUPCOMP_NO_PROGRESS", None)
    assert progress.progress_enabled()
    monkeypatch.setenv("SUPCOMP_NO_PROGRESS", "1")  # what worker processes inherit
    assert not progress.progress_enabled()


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_bars_clear_themselves_and_postfix_does_not_redraw(monkeypatch):
    err, out = FakeTerminal(), FakeTerminal()
    flushed = []
    out.flush = lambda: flushed.append(True)
    monkeypatch.setattr("sys.stderr", err)
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.delenv("SUPCOMP_NO_PROGRESS", raising=False)
    bar = progress.progress_bar(range(3), desc="x", mininterval=100)
    assert not bar.disable and bar.leave is False and flushed  # stdout flushed before the bar is drawn
    before = len(err.getvalue())
    for i in range(50):
        bar.set_postfix(loss=i)
    assert len(err.getvalue()) == before  # no redraw per postfix: logs are not flooded
    list(bar)
    bar.close()
    assert err.getvalue().endswith("\r")  # the bar's line is cleared at the end (leave=False)
    progress.set_progress_enabled(False)
    try:
        assert progress.progress_bar(range(3)).disable
    finally:
        progress.set_progress_enabled(True)


def test_bars_are_off_when_stderr_is_not_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert progress.progress_bar(range(3)).disable


def test_library_modules_do_not_print():
    """Library code logs; only the CLI and the studies' table output (what the CLI prints) use print.
    supcomp/sweep is checked by its own tests."""
    allowed = ("cli.py", "sae_cli.py", "studies", "sweep", "__main__.py")
    offenders = []
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in allowed or rel.name in allowed:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                offenders.append(f"{rel}:{node.lineno}")
    assert not offenders, offenders
