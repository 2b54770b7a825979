"""Every score and metric of the harness, one module per job (import the module you need;
this package imports nothing eagerly, so `finite` stays torch-free):

- `answer_logprob`: answer log-probabilities under an MDLM (`score_facts`, full_mask / elbo).
- `mean_scores`: mean log-prob and ROUGE-L recall over a fact list (job and baseline numbers).
- `retain_sample`: the one retain sampler (seeded blocks of a pool: a job's scored and method
  facts, the tune job's samples, the subsets a method scores or estimates covariance on).
- `rouge`: ROUGE-L recall.
- `truth_ratio`, `forget_quality`, `model_utility`: the TOFU metrics.
- `tofu_quality`: forget quality and model utility of an edited model, as a job reports them.
- `finite`: the one finiteness rule for recorded numbers (`finite_or_none`, `json_safe`).
"""
