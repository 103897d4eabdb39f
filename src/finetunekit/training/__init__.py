"""Training orchestration: argument plans, the optimizer factory and the shared stage runner."""

from finetunekit.training.optimizer import build_optimizer, check_optimizer_options
from finetunekit.training.plan import FitPlan, Stage, fine_tune_stages, plan_fit
from finetunekit.training.stages import (
    StageOptions,
    check_batch_size,
    check_epochs,
    merge_histories,
    pop_data_options,
    run_stage,
)

__all__ = [
    "FitPlan",
    "Stage",
    "StageOptions",
    "build_optimizer",
    "check_batch_size",
    "check_epochs",
    "check_optimizer_options",
    "fine_tune_stages",
    "merge_histories",
    "plan_fit",
    "pop_data_options",
    "run_stage",
]
