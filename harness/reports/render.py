"""A small table model rendered as GitHub Markdown and LaTeX (booktabs)."""

from __future__ import annotations

from dataclasses import dataclass, field

# The cell of a value that does not apply to the row (e.g. the edit time of a reference
# row, which edits nothing), as opposed to "--", a value the row's records lack.
NOT_APPLICABLE = "—"

LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                 "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}",
                 "^": r"\textasciicircum{}", "Δ": r"$\Delta$", "−": "-",
                 NOT_APPLICABLE: "---"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_ESCAPES.get(ch, ch) for ch in text)


@dataclass
class Table:
    headers: list[str]
    latex_headers: list[str]  # already LaTeX (math allowed)
    rows: list[list[str]]  # formatted cells
    footnotes: list[str] = field(default_factory=list)
    n_text_columns: int = 1  # leading left-aligned columns; the rest are right-aligned

    def markdown(self) -> str:
        align = ["---"] * self.n_text_columns + ["---:"] * (len(self.headers) - self.n_text_columns)
        lines = ["| " + " | ".join(self.headers) + " |", "| " + " | ".join(align) + " |"]
        lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |"
                  for row in self.rows]
        if self.footnotes:
            lines.append("")
            lines += [f"{i}. {note}" for i, note in enumerate(self.footnotes, 1)]
        return "\n".join(lines) + "\n"

    def latex(self) -> str:
        spec = "l" * self.n_text_columns + "r" * (len(self.headers) - self.n_text_columns)
        lines = [f"\\begin{{tabular}}{{{spec}}}", "\\toprule",
                 " & ".join(self.latex_headers) + " \\\\", "\\midrule"]
        lines += [" & ".join(latex_escape(cell) for cell in row) + " \\\\" for row in self.rows]
        lines.append("\\bottomrule")
        lines.append("\\end{tabular}")
        if self.footnotes:
            lines.append("\\par\\smallskip\\footnotesize")
            lines += [f"({i}) {latex_escape(note)}\\\\" for i, note in enumerate(self.footnotes, 1)]
        return "\n".join(lines) + "\n"
