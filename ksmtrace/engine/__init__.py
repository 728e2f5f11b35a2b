"""Userspace KSM merge engine: replays page fingerprints through a model of ksmd (what-if)."""

from __future__ import annotations

from ksmtrace.engine.cost import CostProfile
from ksmtrace.engine.knobs import Knobs
from ksmtrace.engine.model import Engine
from ksmtrace.engine.workload import ProcessSpec, Workload

__all__ = ["CostProfile", "Engine", "Knobs", "ProcessSpec", "Workload"]
