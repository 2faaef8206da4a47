"""Evaluation: perplexity over token windows and log-likelihood multiple-choice scoring.

Modules (import what you need; this package imports nothing itself):
- ``perplexity``: ``LogitsFn``, ``PerplexityResult``, ``perplexity_from_ids``, ``perplexity_of_file``, ``context_window``
- ``wikitext``: the WikiText-2 raw test stream, joined as the Hugging Face dataset rows are joined
- ``multiple_choice``: ``MultipleChoiceItem``, ``score_items``, ``summarize``, ``evaluate_items`` (acc / acc_norm)
- ``tasks``: the task registry and loaders (piqa, hellaswag, winogrande, arc_*, boolq, openbookqa, mmlu*)
- ``encoding``: the lm-eval-harness context/continuation token boundary and the BOS rule
- ``target`` / ``recipe``: open a model (plain HF or elastic at a shape) and run an evaluation plan
"""
