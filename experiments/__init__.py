"""Measurements outside the workflow's DAG: each module is a command
(`python -m experiments.<name> --help`) whose results are written up, with the exact
command, in docs/measurements/. Code that relies on a measured number links to that file
rather than restating it.

- `showcase`: TimeROME-DLM variants and tuning side by side on one backbone
  (docs/measurements/forget_frontier_embedded.md, hook_overhead.md);
- `size_sweep`: twin sizes x fine-tuning recipes (docs/measurements/twin_sizes.md);
- `answer_style_cost`: the cost of the corpus answer styles (docs/measurements/answer_styles.md);
- `lr_sweep`: the gradient baselines' learning rates (docs/measurements/lr_sweep_embedded.md);
- `measure_defaults`: the baselines at their defaults
  (docs/measurements/baseline_defaults_embedded.md).
"""
