"""Backbone adapters and their registry."""

from harness.backbones.base import Backbone, BackboneSpec
from harness.backbones.registry import adapter_names, load_backbone, register_adapter

__all__ = ["Backbone", "BackboneSpec", "adapter_names", "load_backbone", "register_adapter"]
