"""`./launch.sh eval` and its parts, one concern per module:

    restore     which checkpoint (resolve_step, best_step, read_step) and its variables as a state
    overrides   what eval and predict may change in the saved config (EVAL_KEYS), the flags' keys
    report      the files and console lines an evaluation leaves
    cli         the command line: parse_args, prepare, evaluate_and_report, main

The evaluator itself (the pass, the counts it reports) is cnnjax.train.evaluator, shared with the
training loop. The names below are re-exported so that `from cnnjax import evaluate;
evaluate.open_run(...)` keeps working.
"""

from cnnjax.evaluate.cli import (
    Prepared,
    add_source_arguments,
    check_fits,
    data_for_weights,
    evaluate_and_report,
    evaluate_weights,
    imagenet_eval_config,
    main,
    parse_args,
    prepare,
    weights_and_config,
)
from cnnjax.evaluate.overrides import EVAL_KEYS, PREDICT_KEYS, apply_eval_overrides
from cnnjax.evaluate.report import report_lines, result_stem, write_result, write_table
from cnnjax.evaluate.restore import (
    Run,
    abstract_variables,
    best_step,
    open_run,
    read_step,
    resolve_step,
    restore_checkpoint,
    restore_step,
    state_from_variables,
)
from cnnjax.train.evaluator import (
    CROPS,
    Evaluator,
    confusion_matrix,
    per_class_accuracy,
    summarize_counts,
)

__all__ = [
    "CROPS",
    "EVAL_KEYS",
    "PREDICT_KEYS",
    "Evaluator",
    "Prepared",
    "Run",
    "abstract_variables",
    "add_source_arguments",
    "apply_eval_overrides",
    "best_step",
    "check_fits",
    "confusion_matrix",
    "data_for_weights",
    "evaluate_and_report",
    "evaluate_weights",
    "imagenet_eval_config",
    "main",
    "open_run",
    "parse_args",
    "per_class_accuracy",
    "prepare",
    "read_step",
    "report_lines",
    "resolve_step",
    "restore_checkpoint",
    "restore_step",
    "result_stem",
    "state_from_variables",
    "summarize_counts",
    "weights_and_config",
    "write_result",
    "write_table",
]
