"""Masked-diffusion scoring, batching and sampling through the `Backbone` adapter."""
