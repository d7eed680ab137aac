"""overnight: durable multi-agent orchestration. Workflows that survive kill -9."""

from __future__ import annotations

from ._engine.scope import StepInfo
from ._engine.waits import ChildHandle
from .agent import Agent, AgentError, AgentResult, approval_signal
from .context import Context
from .engine import Engine, RunHandle
from .errors import (
    BudgetExceeded,
    ChildFailed,
    OvernightError,
    RunCancelled,
    RunCancelledError,
    RunDeadError,
    RunError,
    RunFailedError,
    RunNotFoundError,
    RunParkedError,
    RunTimeout,
    ScheduleNotFoundError,
    SerializationError,
    StaleLeaseError,
    StepFailed,
    StoreError,
    StoreFormatError,
    UserError,
    WorkflowImportError,
)
from .gate import Decision, GrantedTools, Policy, Principal, ToolCallRequest
from .step import Effect, Found, NotFound, RetryPolicy, Step, Unknown, current_step, step
from .store import open_store
from .store.base import RunRecord, RunStatus, ScheduleRecord
from .tool import Tool, ToolArgumentsError, tool
from .workflow import Workflow, workflow

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentError",
    "AgentResult",
    "BudgetExceeded",
    "ChildFailed",
    "ChildHandle",
    "Context",
    "Decision",
    "Effect",
    "Engine",
    "Found",
    "GrantedTools",
    "NotFound",
    "OvernightError",
    "Policy",
    "Principal",
    "RetryPolicy",
    "RunCancelled",
    "RunCancelledError",
    "RunDeadError",
    "RunError",
    "RunFailedError",
    "RunHandle",
    "RunNotFoundError",
    "RunParkedError",
    "RunRecord",
    "RunStatus",
    "RunTimeout",
    "ScheduleNotFoundError",
    "ScheduleRecord",
    "SerializationError",
    "StaleLeaseError",
    "Step",
    "StepFailed",
    "StepInfo",
    "StoreError",
    "StoreFormatError",
    "Tool",
    "ToolArgumentsError",
    "ToolCallRequest",
    "Unknown",
    "UserError",
    "Workflow",
    "WorkflowImportError",
    "approval_signal",
    "current_step",
    "open_store",
    "step",
    "tool",
    "workflow",
]
