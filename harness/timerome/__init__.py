"""TimeROME-DLM: training-free inference-time unlearning for masked diffusion LMs.

Modules: `config` (TimeROMEConfig), `levels` (denoising levels and reveal orders),
`tracing` (Temporal Indirect Effect causal tracing), `solve` (dual ridge factors and their
incremental update), `memory` (the edit memory and its forward hooks, safetensors I/O),
`unembedding` (output embedding lookup), `retain_stats` (retain-key covariance and gate
calibration), `editor` (TimeROMEEditor), `method` (registered method `timerome`),
`tuning` (validation grid search), `figure` (TIE heatmaps), `facts_io` (CLI fact reader).
"""

from harness.timerome.config import TimeROMEConfig

__all__ = ["TimeROMEConfig"]
