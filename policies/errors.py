"""Errors of the policy package: a small tree, so callers can tell bad bundles from engine faults."""


class PolicyError(Exception):
    """Base of every policy-package error."""


class BundleError(PolicyError):
    """A policy bundle is malformed, inconsistent or refers to something unknown."""


class BundleSignatureError(BundleError):
    """A bundle's signature is missing or does not verify."""
