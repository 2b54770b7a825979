"""Training-time and weight-editing baselines for TimeROME-DLM, on the masked-diffusion loss.

Methods (registered with `harness.methods.register_method`, built by `get_method(name)`):
`gradient_ascent`, `graddiff`, `npo` (shared loop: `baselines.training`, stopping and
collapse rules: `baselines.convergence`) and `rome`, `memit` (weight edits: key contexts,
covariance, value optimisation in `edit_contexts`, `covariance`, `value_target`,
`editing`). CLIs: `python -m baselines.lr_sweep`, `python -m baselines.measure_defaults`.
"""
