"""The package version, written once: hatch reads it from here, the package re-exports it."""

from __future__ import annotations

__version__ = "0.1.0"
