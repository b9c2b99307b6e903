"""The pipeline benchmark's CPU accounting: run-queue wait (schedstat) and CPU pressure (PSI),
read from files laid out as Linux lays them out, with hand-computed answers."""

from __future__ import annotations

from pathlib import Path

from bench.pipeline_report import Phase, saturation_figures
from bench.pipeline_watch import (
    CpuSnapshot,
    CpuWatch,
    cpu_pressure_seconds,
    run_queue_seconds,
    schedstat_wait_s,
)
from tests.unit.test_bench_pipeline_report import step

#: `/proc/pressure/cpu` as a 6.x kernel writes it (totals in microseconds).
PSI_TEXT = ("some avg10=1.19 avg60=24.62 avg300=14.91 total=60736242\n"
            "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")


def write_task(process_dir: Path, tid: int, text: str) -> None:
    task = process_dir / "task" / str(tid)
    task.mkdir(parents=True)
    (task / "schedstat").write_text(text)


def test_run_queue_wait_sums_the_second_field_of_every_thread(tmp_path: Path) -> None:
    # 2.0 s + 0.5 s waiting; the on-CPU time (first field) does not count; a thread whose
    # file is garbled (it ended mid-read) counts 0.
    write_task(tmp_path, 101, "1000000000 2000000000 5\n")
    write_task(tmp_path, 102, "7 500000000 3\n")
    write_task(tmp_path, 103, "\n")
    assert schedstat_wait_s(tmp_path) == 2.5


def test_no_such_process_has_waited_nothing(tmp_path: Path) -> None:
    assert schedstat_wait_s(tmp_path / "gone") == 0.0
    assert run_queue_seconds(2**22 + 12345, children=True) == 0.0  # above Linux's largest PID


def test_cpu_pressure_is_the_some_total_in_seconds(tmp_path: Path) -> None:
    psi = tmp_path / "cpu"
    psi.write_text(PSI_TEXT)
    assert cpu_pressure_seconds(psi) == 60.736242
    psi.write_text("full avg10=0.00 avg60=0.00 avg300=0.00 total=5\n")
    assert cpu_pressure_seconds(psi) is None
    assert cpu_pressure_seconds(tmp_path / "absent") is None  # a kernel without PSI


def test_between_two_snapshots_as_percent_of_a_core() -> None:
    # 2 s apart: the worker ran 1.2 s (60 %) and waited 0.7 s (35 %); some task waited 0.9 s
    # of the 2 (45 %).
    a = CpuSnapshot(at=10.0, used={"workers": 5.0}, waited={"workers": 1.0}, pressure_s=100.0)
    b = CpuSnapshot(at=12.0, used={"workers": 6.2}, waited={"workers": 1.7}, pressure_s=100.9)
    use = CpuWatch.between(a, b)
    assert use.used == {"workers": 60.0}
    assert use.waiting == {"workers": 35.0}
    assert use.pressure == 45.0
    assert CpuWatch.between(a.model_copy(update={"pressure_s": None}), b).pressure is None


def test_the_top_step_says_whether_the_machine_was_full() -> None:
    top = step(500, sustained=False).model_copy(update={
        "cpu_percent": {"workers": 60.0}, "cpu_wait_percent": {"workers": 35.0},
        "cpu_pressure_percent": 45.0})
    phase = Phase(workers=1, run=0, steps=[step(400), top])
    pressure, waiting = saturation_figures("1 worker", [phase])
    assert (pressure.value, pressure.unit) == (45.0, "%")
    assert "500 frames/s step" in pressure.notes
    assert waiting.value == 35.0 and "ran 60 % of a core" in waiting.notes


def test_no_pressure_figures_without_readings() -> None:
    assert saturation_figures("1 worker", [Phase(workers=1, run=0, steps=[step(400)])]) == []
    assert saturation_figures("1 worker", []) == []
