import subprocess
import sys

import pytest

from mlgate.cores import free_cores, left_free, usable_cores


@pytest.mark.parametrize(
    ("cores", "used_s", "own_s", "free"),
    [
        (2, 0.2, 0.2, 2),  # only this process ran: its own threads do not count
        (2, 0.3, 0.1, 1),  # another process kept a core busy for the whole 0.2 s
        (2, 0.08, 0.0, 2),  # a blip: under half a core
        (4, 0.8, 0.0, 1),  # every core taken by others: still one
    ],
)
def test_the_free_cores_are_those_other_processes_did_not_use(cores, used_s, own_s, free):
    assert left_free(cores, used_s, own_s, elapsed_s=0.2) == free


def test_cores_every_one_of_which_another_process_keeps_busy_leave_one_to_fit_on():
    spinners = [subprocess.Popen([sys.executable, "-I", "-S", "-c", "while True: pass"]) for _ in range(usable_cores())]
    try:
        assert free_cores(window_s=0.3) == 1
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
