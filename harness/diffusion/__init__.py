"""Masked-diffusion batching, training loss and sampling through the `Backbone` adapter
(scoring lives in harness.evaluation)."""
