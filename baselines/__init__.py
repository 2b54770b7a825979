"""Training-time and weight-editing baselines for TimeROME-DLM, on the masked-diffusion loss.

Methods (registered with `harness.methods.register_method`, built by `get_method(name)`):
`gradient_ascent`, `graddiff`, `npo` (shared loop: `baselines.training`, stopping and
collapse rules: `baselines.convergence`) and `rome`, `memit` (weight edits: key contexts,
covariance, value optimisation in `edit_contexts`, `covariance`, `value_target`,
`editing`). Each method's defaults: harness/methods/defaults/<method>.yaml. The sweeps that
chose them are in `experiments/` (`lr_sweep`, `measure_defaults`).
"""
