"""Params of the workflow's job rules that Snakemake can track (workflows/rules/*.smk).

Snakemake records a rule's params in its metadata and reruns a job whose params changed,
except params that are functions of the job's output: those are not recorded at all, so a
change of config that reaches a job only through them reruns nothing (Snakemake 9.27,
checked in tests/harness/test_workflow_params.py). Every job rule builds its job JSON from
its wildcards and output path, so each also carries `provenance`, the same JSON with the
output path left as a placeholder.
"""

from __future__ import annotations

from typing import Any, Callable


class OutputPlaceholders(list):
    """Stands in for a job's output files: "{output}" by index, "{output.<name>}" by name."""

    def __getattr__(self, name):
        return "{output." + name + "}"


OUTPUT_PLACEHOLDER = OutputPlaceholders(["{output}"])


def tracked_job(build: Callable[[Any, Any], str]) -> dict[str, Callable[..., str]]:
    """The params of a job rule: `job`, the job's JSON (`build(wildcards, output)`), and
    `provenance`, the same JSON with the output path left as a placeholder. Snakemake does
    not record params that depend on the output, so a change of config reaching only `job`
    would rerun nothing; `provenance` depends on the wildcards only, so Snakemake records it
    and reruns the job (and what depends on it) when it changes."""
    return {"job": build, "provenance": lambda w: build(w, OUTPUT_PLACEHOLDER)}
