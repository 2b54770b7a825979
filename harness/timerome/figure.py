"""TIE figure: mean indirect effect over layer x denoising level and layer x position.

Left: mean over facts of IE(l, j = last subject token, t), one column per level t.
Right: mean over facts of TIE(l, j) per position offset relative to the subject end
(0 = last subject token; positions not traced for a fact are left out of its mean).
Written as PNG and PDF with the Agg backend (each file written atomically).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from harness.timerome.tracing import TraceResult  # noqa: E402
from harness.atomic import atomic_file


def ie_by_level(trace: TraceResult) -> torch.Tensor:
    """[L, T] mean over facts of IE at the last subject token."""
    p0 = trace.offsets.index(0)
    return trace.ie[:, :, :, p0].nanmean(0).T


def tie_by_position(trace: TraceResult) -> torch.Tensor:
    """[L, P] mean over facts of TIE per offset (nan-aware)."""
    return trace.tie.nanmean(0)


def _save(fig, path: Path) -> None:
    with atomic_file(path) as tmp:
        fig.savefig(tmp, dpi=150, bbox_inches="tight")


def tie_plot(trace: TraceResult, title: str = "", caption: str = "") -> plt.Figure:
    """The two panels as a matplotlib Figure (the caller closes it). `caption` (e.g. the
    summary numbers of `harness.jobs.tie.figure_caption`) is drawn under the panels."""
    by_level = ie_by_level(trace).numpy()
    by_pos = tie_by_position(trace).numpy()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8), constrained_layout=True)
    n_layers = by_level.shape[0]
    lim1 = max(1e-12, float(abs(by_level).max()))
    im1 = ax1.imshow(by_level, aspect="auto", origin="lower", cmap="RdBu_r", vmin=-lim1, vmax=lim1)
    ax1.set_yticks(range(n_layers))
    ax1.set_xticks(range(len(trace.times)), [f"{t:g}" for t in trace.times])
    ax1.set_xlabel("denoising level t (fraction of answer still masked)")
    ax1.set_ylabel("layer")
    ax1.set_title("mean IE at last subject token")
    fig.colorbar(im1, ax=ax1, label="IE (nats / masked token)")
    lim2 = max(1e-12, float(abs(by_pos[by_pos == by_pos]).max())) if (by_pos == by_pos).any() else 1.0
    im2 = ax2.imshow(by_pos, aspect="auto", origin="lower", cmap="RdBu_r", vmin=-lim2, vmax=lim2)
    ax2.set_yticks(range(n_layers))
    ax2.set_xticks(range(len(trace.offsets)), [str(o) for o in trace.offsets])
    ax2.set_xlabel("position relative to subject end")
    ax2.set_ylabel("layer")
    ax2.set_title("mean TIE (time-weighted IE)")
    fig.colorbar(im2, ax=ax2, label="TIE (nats / masked token)")
    if title:
        fig.suptitle(title)
    if caption:
        fig.supxlabel(caption, fontsize=9)
    return fig


def tie_figure(trace: TraceResult, out_prefix: str | Path, title: str = "",
               caption: str = "") -> list[Path]:
    """Write `tie_plot` as `<out_prefix>.png` and `.pdf`; returns both paths."""
    fig = tie_plot(trace, title, caption)
    prefix = Path(out_prefix)
    paths = [prefix.with_suffix(".png"), prefix.with_suffix(".pdf")]
    try:
        for path in paths:
            _save(fig, path)
    finally:
        plt.close(fig)
    return paths
