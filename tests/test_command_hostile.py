"""``command`` checks against commands that misbehave: huge output, a forbidden line deep
inside it, background processes that keep the pipes open, commands that ignore the
timeout, hostile JSON on stdout, secrets straddling the evidence cut.

Every command is a real process (``sh -c`` / ``python -c``); every process these tests look
for is one they started (its PID written to a file in ``tmp_path``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from opsgate.model import CommandCheck
from opsgate.probes import ProbeContext
from opsgate.redact import REDACTOR, sink
from opsgate.runner import run_check

PY = sys.executable


def check(tmp_path, **fields):
    fields.setdefault("name", "script")
    fields.setdefault("timeout", 20)
    return run_check(CommandCheck(**fields), ProbeContext(tmp_path))


def running(pid: int, mark: str) -> bool:
    """Whether ``pid`` still runs our command (``mark`` in its command line): zombies waiting
    for init to reap them do not run, and a reused PID is someone else's process."""
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rpartition(b")")[2].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except (OSError, IndexError):
        return False
    return state != b"Z" and mark in cmdline


def wait_gone(pid: int, mark: str, within: float = 3.0) -> bool:
    until = time.monotonic() + within
    while time.monotonic() < until:
        if not running(pid, mark):
            return True
        time.sleep(0.05)
    return False


# --- output of any size, in bounded memory ----------------------------------------------

PROBE_RSS = textwrap.dedent("""
    import json, resource, sys
    from opsgate.model import CommandCheck
    from opsgate.probes import ProbeContext
    from opsgate.probes.command import observe
    obs = observe(CommandCheck(name="big", shell=sys.argv[1], timeout=120, stdout_not_regex="^FATAL"), ProbeContext())
    print(json.dumps({"rss_kb": int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]), "error": obs.error,
                      "values": obs.values, "bytes": obs.details.get("stdout_bytes")}))
""")


@pytest.mark.timeout(120)
def test_256_mb_of_stdout_is_read_in_bounded_memory():
    """The probe's own peak RSS stays far below the output's size (today: twice the output)."""
    size = 256 << 20
    shell = f"yes 'a line of output from a chatty health script' | head -c {size}; echo; echo FATAL: disk gone"
    done = subprocess.run([PY, "-c", PROBE_RSS, shell], capture_output=True, text=True, timeout=110,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["rss_kb"] < 300 * 1024, f"peak RSS {seen['rss_kb'] // 1024} MB for {size >> 20} MB of output"
    assert seen["error"] is None
    assert seen["values"]["exit_code"] == 0
    assert seen["bytes"] == size + len("\nFATAL: disk gone\n")
    assert seen["values"]["stdout_not_regex_found"] is True  # the last line, after 256 MB


def test_forbidden_line_in_the_middle_of_large_output_fails(tmp_path):
    """Only the tail used to be searched: a FATAL line 8 MB before the end passed."""
    filler = "yes 'INFO all good' | head -c 8000000"
    result = check(tmp_path, shell=f"{filler}; echo; echo 'FATAL: replica lost'; {filler}", stdout_not_regex="^FATAL")
    assert result.status == "fail", result.message
    assert "stdout has no /^FATAL/: observed true" in result.message


def test_required_line_at_the_start_of_large_output_is_found(tmp_path):
    result = check(tmp_path, shell="echo '9/9 passed'; yes 'debug noise' | head -c 8000000", stdout_regex=r"^9/9 passed$")
    assert result.status == "pass", result.message


def test_forbidden_word_deep_inside_one_very_long_line_is_found(tmp_path):
    """A 6 MB line with ERROR in its middle: no newline to split on, still searched everywhere."""
    script = "import sys; w = sys.stdout.write; w('x' * 3_000_000); w('ERROR'); w('y' * 3_000_000)"
    result = check(tmp_path, argv=[PY, "-c", script], stdout_not_regex="ERROR")
    assert result.status == "fail", result.message
    result = check(tmp_path, argv=[PY, "-c", script.replace("ERROR", "ERR0R")], stdout_not_regex="ERROR")
    assert result.status == "pass", result.message


def test_anchors_hold_across_search_windows(tmp_path):
    """'^ok$' must not match an 'ok' that merely sits at a window's edge inside a longer line."""
    script = "import sys; sys.stdout.write('n' * 1048574 + 'ok' + 'not the end of this line\\n')"
    result = check(tmp_path, argv=[PY, "-c", script], stdout_regex="^ok$")
    assert result.status == "fail", result.message
    assert "stdout matches /^ok$/: observed false" in result.message


def test_large_output_keeps_head_and_tail_cut_at_line_ends(tmp_path):
    script = "import sys; sys.stdout.write(''.join(f'line {i}\\n' for i in range(200_000)))"
    result = check(tmp_path, argv=[PY, "-c", script])
    assert result.status == "pass", result.message
    details = result.evidence["details"]
    assert details["stdout_bytes"] == sum(len(f"line {i}\n") for i in range(200_000))
    assert details["stdout_head"].startswith("line 0\nline 1\n")
    assert details["stdout_tail"].endswith("line 199999\n")
    assert details["stdout_tail"].startswith("line ")  # cut at a line end, not mid-line
    assert len(details["stdout_tail"]) <= 2000


def test_both_streams_flood_at_once_without_deadlock(tmp_path):
    script = ("import sys\nfor i in range(2000):\n    sys.stderr.write('e' * 1000 + '\\n')\n"
              "    sys.stdout.write('o' * 1000 + '\\n')\nsys.stderr.write('WARNING done\\n')")
    result = check(tmp_path, argv=[PY, "-c", script], stderr_regex="^WARNING done$", timeout=10)
    assert result.status == "pass", result.message


# --- processes: background holders, the timeout, the whole group -------------------------

@pytest.mark.timeout(30)
def test_background_process_holding_stdout_does_not_turn_exit_0_into_a_timeout(tmp_path):
    """``sleep & echo ok``: the shell exits at once; the sleep kept the pipe and made the
    check wait for its whole timeout, then fail as 'did not finish'."""
    pidfile = tmp_path / "bg.pid"
    started = time.monotonic()
    result = check(tmp_path, shell=f"sleep 67 & echo $! > {pidfile}; echo ok", stdout_regex="^ok$", timeout=10)
    took = time.monotonic() - started
    assert result.status == "pass", result.message
    assert took < 5, f"an exit 0 at once took {took:.1f} s"
    assert result.evidence["observed"]["exit_code"] == 0
    assert "a background process kept the output open" in result.evidence["details"]["background"]
    assert wait_gone(int(pidfile.read_text()), "sleep 67"), "the process holding the pipe was left running"


@pytest.mark.timeout(30)
def test_background_process_with_its_own_output_is_left_alone(tmp_path):
    """A command that starts a daemon with its output sent elsewhere keeps it: only
    processes holding our pipes are ended."""
    pidfile = tmp_path / "daemon.pid"
    result = check(tmp_path, shell=f"sleep 68 > /dev/null 2>&1 & echo $! > {pidfile}; echo started")
    pid = int(pidfile.read_text())
    try:
        assert result.status == "pass", result.message
        assert "background" not in result.evidence["details"]
        assert running(pid, "sleep 68")
    finally:
        os.kill(pid, 9)


@pytest.mark.timeout(30)
def test_timeout_ends_the_whole_group_even_a_grandchild_that_ignores_sigterm(tmp_path):
    pidfile = tmp_path / "grandchild.pid"
    shell = f"sh -c 'trap \"\" TERM; sleep 69 & echo $! > {pidfile}; wait' & wait"
    started = time.monotonic()
    result = check(tmp_path, shell=shell, timeout=1)
    took = time.monotonic() - started
    assert result.status == "fail"
    assert "did not finish within 1s (killed)" in result.message
    assert took < 5, f"a 1 s timeout took {took:.1f} s"
    assert wait_gone(int(pidfile.read_text()), "sleep 69"), "a grandchild outlived the timeout"


@pytest.mark.timeout(30)
def test_timeout_sends_sigterm_first_so_the_command_can_clean_up(tmp_path):
    """SIGTERM, then SIGKILL after a grace: a script's TERM trap gets to run."""
    marker = tmp_path / "cleaned-up"
    result = check(tmp_path, shell=f"trap 'touch {marker}; exit 143' TERM; sleep 70 & wait", timeout=1)
    assert result.status == "fail"
    assert "did not finish within 1s" in result.message
    assert marker.exists(), "the command was killed without a chance to clean up"


# --- hostile stdout for JSON conditions ---------------------------------------------------

def test_100000_deep_json_stdout_fails_with_a_message_about_stdout(tmp_path):
    result = check(tmp_path, argv=[PY, "-c", "print('[' * 100_000 + ']' * 100_000)"], expect=["length(@) > `0`"])
    assert result.status == "fail", result.message
    assert "stdout of" in result.message and "nested deeper than 200 levels" in result.message
    assert "RecursionError" not in result.message


def test_json_stdout_deeper_than_the_limit_is_not_evaluated(tmp_path):
    """300 levels parse in Python, but such a document is no health report: not evaluated."""
    result = check(tmp_path, argv=[PY, "-c", "print('[' * 300 + ']' * 300)"], expect=["length(@) > `0`"])
    assert result.status == "fail", result.message
    assert "nested deeper than 200 levels" in result.message


def test_invalid_utf8_json_stdout_fails_naming_the_byte(tmp_path):
    """Decoding with replacement turned 'degr\\xffded' into a string that is not 'degraded'
    and PASSED ``status != 'degraded'``; JSON is UTF-8, so such stdout is not usable."""
    script = "import sys; sys.stdout.buffer.write(b'{\"status\": \"degr\\xffded\"}')"
    result = check(tmp_path, argv=[PY, "-c", script], expect=["status != 'degraded'"])
    assert result.status == "fail", result.message
    assert "not valid UTF-8 (byte 0xff at offset 16)" in result.message


def test_invalid_utf8_plain_output_is_shown_with_replacement(tmp_path):
    script = "import sys; sys.stdout.buffer.write(b'caf\\xe9 ok\\n')"
    result = check(tmp_path, argv=[PY, "-c", script], stdout_regex="ok$")
    assert result.status == "pass", result.message
    assert result.evidence["details"]["stdout_tail"] == "caf\ufffd ok\n"


def test_json_stdout_over_the_limit_fails_saying_its_size(tmp_path):
    script = "import json; print(json.dumps({'status': 'healthy', 'pad': 'x' * (17 << 20)}))"
    result = check(tmp_path, argv=[PY, "-c", script], expect=["status == 'healthy'"])
    assert result.status == "fail", result.message
    assert "is 17 MiB, more than the 16 MiB JSON limit" in result.message


def test_a_truncated_document_is_never_evaluated(tmp_path):
    """Only the last 1 MiB used to be parsed: garbage, then a healthy 1 MiB document, passed."""
    script = ("import json, sys; doc = json.dumps({'status': 'healthy', 'pad': ''}); "
              "sys.stdout.write('Traceback: not JSON\\n' * 1000 + doc[:-2] + 'x' * ((1 << 20) - len(doc) - 1) + '\"}\\n')")
    result = check(tmp_path, argv=[PY, "-c", script], expect=["status == 'healthy'"])
    assert result.status == "fail", result.message
    assert "is not JSON" in result.message


def test_null_stdout_is_a_document(tmp_path):
    result = check(tmp_path, shell="echo null", expect=["length(@) > `0`"])
    assert result.status == "fail", result.message
    assert check(tmp_path, shell="echo null", expect=["@ == null"]).status == "pass"


# --- evidence: redacted before it is cut --------------------------------------------------

def test_a_secret_straddling_the_evidence_cut_leaves_no_fragment(tmp_path):
    secret = "tok-Qm9vW4xZ8rT2pL6vN3"
    REDACTOR.add(secret)
    script = f"import sys; sys.stdout.write({secret!r} + 'x' * 1990); sys.stderr.write({secret!r} + 'y' * 295); sys.exit(1)"
    result = check(tmp_path, argv=[PY, "-c", script])
    assert result.status == "fail"
    # the result in memory keeps what was observed; every output goes through the sink
    shown = json.dumps(sink(result.to_json()))
    for fragment in (secret[-10:], secret[-5:]):
        assert fragment not in shown, f"a fragment of the secret ({fragment}) reached the evidence"


# --- the streaming search at a window's edge ----------------------------------------------

def test_a_match_that_depends_on_text_after_the_window_is_checked_again():
    """'^ok$' at the very end of a window is only a match if the line ends there: 'okay' is not."""
    from opsgate.probes.command import _Search

    search = _Search("^ok$", unsure=False)
    search.feed("x" * (_Search.STEP - 3) + "\nok")  # a window ends right after "ok"
    search.feed("ay\n" + "tail\n" * 10)
    assert search.finish() is False
    search = _Search("^ok$", unsure=False)
    search.feed("x" * (_Search.STEP - 3) + "\nok")
    search.feed("\n" + "tail\n" * 10)
    assert search.finish() is True


def test_an_unconfirmable_long_match_never_passes():
    """A match longer than the windows' overlap, cut by a window's end: a forbidden pattern
    counts it as found (fail), a required one as not found (fail): never a false PASS."""
    from opsgate.probes.command import _Search

    text = "BEGIN" + "z" * (_Search.STEP - 10) + "END"  # ends 2 characters before the window's end
    for unsure in (True, False):
        search = _Search("BEGIN.*END", unsure=unsure)
        search.feed(text + "\n" * 2)
        search.feed("more\n")
        assert search.finish() is unsure


@pytest.mark.timeout(30)
def test_a_timeout_spent_searching_the_output_says_so(tmp_path):
    """A slow pattern over a flood of output throttles the command; the message must not
    blame the command alone."""
    result = check(tmp_path, shell="yes 'INFO request served' | head -c 2000000000", stdout_not_regex="^(a|b)*FATAL",
                   timeout=2)
    assert result.status == "fail"
    assert "did not finish within 2s (killed); searching its" in result.message
