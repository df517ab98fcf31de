"""The errors of ztgw.scanners: one small tree, translated to exit codes/HTTP in one place."""

from __future__ import annotations


class ScannerError(Exception):
    """Base of every error raised by ztgw.scanners."""


class RuleError(ScannerError):
    """A detection rule cannot be parsed, compiled or converted."""


class TargetNotAllowed(ScannerError):
    """A scan or drill was pointed at a host outside the allowed set (loopback by default)."""


class BadInput(ScannerError):
    """An argument (host list, URL, time, id) is not valid."""
