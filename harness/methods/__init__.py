"""What every unlearning method shares, not the methods themselves (those live in
`harness.timerome` and `baselines`): the interface (`base`: Method, EditRequest,
MethodOutcome), the registry of methods by name with what each one is (`registry`:
MethodInfo, method_info, methods_of_kind, tuned_methods, reference_methods) and each
method's defaults (`defaults`: harness/methods/defaults/<method>.yaml, read by
method_defaults). The reference rows of the tables ('no_edit', 'retain_model': models scored
as they are, no edit) are registered pseudo-methods of kind "reference" (`reference`)."""

from harness.methods.base import EditRequest, Method, MethodNotApplicable, MethodOutcome
from harness.methods.registry import (MethodInfo, get_method, method_info, method_names,
                                      methods_of_kind, reference_methods, register_method,
                                      tuned_methods)

__all__ = ["EditRequest", "Method", "MethodInfo", "MethodNotApplicable", "MethodOutcome",
           "get_method", "method_info", "method_names", "methods_of_kind", "reference_methods",
           "register_method", "tuned_methods"]
