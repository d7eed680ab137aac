"""The public API is what `overnight.__all__` says, no more and no less."""

from __future__ import annotations

import inspect

import overnight


def test_all_names_the_public_api() -> None:
    assert overnight.__all__ == sorted(overnight.__all__, key=lambda n: (n[0].islower(), n))
    for name in overnight.__all__:
        assert getattr(overnight, name) is not None, name
    # Submodules become attributes as they are imported; they are not names of the API.
    public = {
        n
        for n in dir(overnight)
        if not n.startswith("_") and not inspect.ismodule(getattr(overnight, n))
    } - {"annotations"}
    assert public - set(overnight.__all__) == set(), "exported but not in __all__"


def test_pinned_names() -> None:
    assert overnight.__all__ == [
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
