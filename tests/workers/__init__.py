"""Workflows and a worker entry point for tests that run workers in real subprocesses."""
