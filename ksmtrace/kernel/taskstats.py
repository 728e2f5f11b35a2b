"""ksmd's CPU and run-queue delay from taskstats netlink (pyroute2), or from procfs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ksmtrace.hostpaths import HostPaths


@dataclass(frozen=True, slots=True)
class TaskCpu:
    """CPU accounting of one task.

    Attributes:
        run_ns: on-CPU time, the scheduler's ``se.sum_exec_runtime`` (taskstats
            ``cpu_run_virtual_total``; the tick-sampled ``cpu_run_real_total`` undercounts a
            kernel thread that runs in short bursts, so it is not used).
        delay_ns: time spent runnable but waiting for a CPU (``cpu_delay_total``).
        source: "taskstats" or "schedstat".
    """

    run_ns: int
    delay_ns: int
    source: str


class TaskCpuReader:
    """Reads :class:`TaskCpu` for a pid, preferring taskstats over /proc/<pid>/schedstat."""

    def __init__(self, paths: HostPaths, use_taskstats: bool = True) -> None:
        self._paths = paths
        self._ts: Any = None
        if use_taskstats and paths.root.as_posix() == "/":
            try:
                from pyroute2 import TaskStats

                ts = TaskStats()
                ts.bind()
                self._ts = ts
            except Exception:  # noqa: BLE001 - no netlink, no permission: use procfs
                self._ts = None

    def read(self, pid: int) -> TaskCpu | None:
        """Current accounting of ``pid``, or None if it is gone."""
        if self._ts is not None:
            try:
                msg = self._ts.get_pid_stat(pid)[0]
                stats = msg.get_attr("TASKSTATS_TYPE_AGGR_PID").get_attr("TASKSTATS_TYPE_STATS")
                return TaskCpu(
                    int(stats["cpu_run_virtual_total"]),
                    int(stats["cpu_delay_total"]),
                    "taskstats",
                )
            except Exception:  # noqa: BLE001 - task gone or netlink error: try procfs
                pass
        return self._schedstat(pid)

    def _schedstat(self, pid: int) -> TaskCpu | None:
        try:
            fields = (self._paths.pid_dir(pid) / "schedstat").read_text().split()
            return TaskCpu(int(fields[0]), int(fields[1]), "schedstat")
        except (OSError, ValueError, IndexError):
            return None

    def close(self) -> None:
        """Close the netlink socket."""
        if self._ts is not None:
            self._ts.close()
            self._ts = None
