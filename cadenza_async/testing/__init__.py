"""Test helpers for SDK users: the exchange simulator, its pytest fixture, the fault proxy."""
