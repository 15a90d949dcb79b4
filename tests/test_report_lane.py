"""`ReportLane`: reports run beside the Watches, a few at a time, first come first served; a
Watch's next report drops its waiting one or waits for the one under way."""

from __future__ import annotations

import asyncio

import pytest

from loop.watch.report_lane import Report, ReportLane
from tests.waiting import wait_for_async


class Reports:
    """Reports that record when they start and finish, each held until released."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}

    def report(self, key: str, *, fail: bool = False) -> tuple[str, Report]:
        gate = self.gates.setdefault(key, asyncio.Event())

        async def run() -> None:
            self.started.append(key)
            await gate.wait()
            if fail:
                raise RuntimeError(f"{key} failed")
            self.finished.append(key)

        return key, run

    def release(self, key: str) -> None:
        self.gates[key].set()


async def _running(reports: Reports, count: int) -> bool:
    return len(reports.started) == count


async def test_at_most_in_flight_run_at_once_in_the_order_given() -> None:
    lane, reports = ReportLane(in_flight=2), Reports()
    for key in ("a", "b", "c", "d"):
        lane.submit(*reports.report(key))
    await wait_for_async(lambda: _running(reports, 2), within=5, what="two reports started")
    await asyncio.sleep(0)  # a third would start here if the lane let it
    assert reports.started == ["a", "b"]
    reports.release("a")
    await wait_for_async(lambda: _running(reports, 3), within=5, what="the third report")
    assert reports.started == ["a", "b", "c"]
    for key in ("b", "c", "d"):
        reports.release(key)
    await lane.drain()
    assert reports.finished == ["a", "b", "c", "d"]
    assert len(lane) == 0


async def test_settle_drops_a_report_not_yet_started() -> None:
    lane, reports = ReportLane(in_flight=1), Reports()
    lane.submit(*reports.report("busy"))
    lane.submit(*reports.report("waiting"))
    await wait_for_async(lambda: _running(reports, 1), within=5, what="the first report")
    await lane.settle("waiting")
    reports.release("busy")
    await lane.drain()
    assert reports.started == ["busy"]
    assert reports.finished == ["busy"]


async def test_settle_waits_for_a_report_under_way() -> None:
    lane, reports = ReportLane(in_flight=1), Reports()
    lane.submit(*reports.report("w"))
    await wait_for_async(lambda: _running(reports, 1), within=5, what="the report")
    settling = asyncio.create_task(lane.settle("w"))
    await asyncio.sleep(0)
    assert not settling.done()
    reports.release("w")
    await asyncio.wait_for(settling, 5)
    assert reports.finished == ["w"]


async def test_a_key_waiting_or_running_is_not_submitted_twice() -> None:
    lane, reports = ReportLane(in_flight=1), Reports()
    key, run = reports.report("w")
    lane.submit(key, run)
    lane.submit(key, run)
    assert len(lane) == 1
    reports.release("w")
    await lane.drain()
    assert reports.finished == ["w"]


async def test_a_failing_report_is_logged_and_the_lane_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    lane, reports = ReportLane(in_flight=1), Reports()
    lane.submit(*reports.report("bad", fail=True))
    lane.submit(*reports.report("good"))
    reports.release("bad")
    reports.release("good")
    await lane.drain()
    assert reports.finished == ["good"]
    assert "report bad failed" in caplog.text


async def test_close_cancels_what_waits_and_runs() -> None:
    lane, reports = ReportLane(in_flight=1), Reports()
    lane.submit(*reports.report("running"))
    lane.submit(*reports.report("waiting"))
    await wait_for_async(lambda: _running(reports, 1), within=5, what="the first report")
    await lane.close()
    assert reports.finished == []
    assert reports.started == ["running"]
    assert len(lane) == 0


def test_a_lane_needs_a_slot() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ReportLane(in_flight=0)
