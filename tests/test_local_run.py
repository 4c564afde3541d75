"""The local runner: task events from kfp.local's output, failure reasons, and clean-up."""

from tollgate.local_run import _failure_reason, _TaskEventStream

COLOR = "\x1b[96m"
RESET = "\x1b[0m"


def test_task_events_are_read_through_colour_codes_and_interleaved_writes(tmp_path):
    events = []
    with open(tmp_path / "log", "w") as log:
        stream = _TaskEventStream(log, lambda event, task: events.append((event, task)))
        stream.write(f"05:00:00.000 - INFO - Executing task {COLOR}'train'{RESET}\n")
        # Another thread's partial print, then two events on one physical line.
        stream.write("    some output without newline ")
        stream.write(f"05:00:01.000 - INFO - Task {COLOR}'train'{RESET} finished with status "
                     f"\x1b[92mSUCCESS{RESET} Executing task {COLOR}'select'{RESET}\n")
        stream.write(f"Task {COLOR}'select'{RESET} finished with status \x1b[91mFAILURE{RESET}")
        stream.write("\n")
    assert events == [("start", "train"), ("success", "train"), ("start", "select"), ("failure", "select")]
    assert "some output" in (tmp_path / "log").read_text()


def test_failure_reason_is_the_last_exception_with_its_whole_message():
    log = """
05:00:00.000 - INFO - Executing task 'validate'
        Traceback (most recent call last):
          File "/x/ephemeral_component.py", line 40, in validate
            raise DataError(outcome.failure_message())
        tollgate.errors.DataError: validation failed; nothing will be trained or registered:
          credit_score: missing_column (observed absent; allowed present)
          income: dtype_change (observed string; allowed float64)

05:00:01.000 - ERROR - Task 'validate' finished with status FAILURE
"""
    reason = _failure_reason(log)
    assert reason.startswith("DataError: validation failed")
    assert "credit_score: missing_column" in reason and "income: dtype_change" in reason
    assert "finished with status" not in reason


def test_print_is_restored_after_a_run_with_parallel_tasks(trained_run_record):
    # The session's default run (conftest) compared builtins.print before and after, in the process
    # that ran it; its three candidates trained two at a time (train.parallelism 2).
    summary = trained_run_record["summary"]
    assert next(step["tasks"] for step in summary["steps"] if step["step"] == "train") == 3
    assert trained_run_record["print_restored"] is True
