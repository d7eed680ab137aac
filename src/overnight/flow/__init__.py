"""Workflows as graphs: steps, agents and sub-workflows with dependencies, in Python or YAML.

A flow is checked when it is built (unknown steps, missing inputs, cycles, unbounded loops) and
compiles to an ordinary durable workflow, so it inherits the kernel's crash safety. See
docs/flows.md.
"""

from __future__ import annotations

from .builder import Flow
from .compiled import FlowWorkflow, describe
from .run import FlowRunError
from .spec import Condition, FlowError, Ref

__all__ = ["Condition", "Flow", "FlowError", "FlowRunError", "FlowWorkflow", "Ref", "describe"]
