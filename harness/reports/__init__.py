"""Tables (Markdown, LaTeX, CSV) and figures (PNG, PDF) from the aggregated results."""
