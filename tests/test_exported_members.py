"""The public API is what `overnight.__all__` says, no more and no less."""

from __future__ import annotations

import overnight


def test_all_names_the_public_api() -> None:
    assert overnight.__all__ == sorted(overnight.__all__, key=lambda n: (n[0].islower(), n))
    for name in overnight.__all__:
        assert getattr(overnight, name) is not None, name
    public = {n for n in dir(overnight) if not n.startswith("_")} - {"annotations"}
    modules = {
        "agent",
        "context",
        "engine",
        "errors",
        "gate",
        "models",
        "step",
        "store",
        "testing",
        "tool",
        "workflow",
    }
    assert public - modules - set(overnight.__all__) == set(), "exported but not in __all__"


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
