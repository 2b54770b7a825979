"""Unlearning/editing methods behind one interface, picked by name from a registry."""

from harness.methods.base import EditRequest, Method, MethodNotApplicable, MethodOutcome
from harness.methods.registry import get_method, method_names, register_method

__all__ = ["EditRequest", "Method", "MethodNotApplicable", "MethodOutcome", "get_method", "method_names",
           "register_method"]
