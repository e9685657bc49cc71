"""The pipeline's plan: every job of the Snakemake workflow as a pure function of the config.

The Snakefile reads it as ``X`` (``from adapter_placement import plan as X``) and its paths as
``P`` (``from adapter_placement.plan import paths as P``). Nothing here reads data or weights, so
the paper DAG builds offline.

================  ==============================================================================
module            what it holds
================  ==============================================================================
``placement``     ``Placement``: a placement name as a value (parse, format, edges, size, ...)
``paths``         where every artifact lives (batches, scores, lr choices, placements, logs, ...)
``config``        the config values that several planners read (models, datasets, experiments)
``runs``          ``Run`` and ``Trial``, one planner per experiment, batches, lr selection
``searches``      the placement searches of the search experiment (beyond the paper)
``jobs``          what each rule hands its job: ``RunSpec`` (recipe + io) and the other specs
``checks``        ``ConfigError`` and the checks that a JSON schema cannot express
================  ==============================================================================
"""
from . import checks, config, jobs, paths, placement, runs, searches
from .checks import ConfigError, check_config, command_line_values
from .config import (FAMILIES, PAPER_DATASETS, TRAINING_EXPERIMENTS, chance_levels, compute_settings,
                     dataset_model, dataset_rank, enabled_experiments, experiment_datasets, experiment_seeds, model_spec,
                     num_nodes, pretrained_models, tracking_uri, used_datasets, used_models)
from .jobs import (RunIO, RunSpec, TrainRecipe, batch_inputs, batch_specs, data_spec, model_info_spec,
                   pretrain_spec, run_spec, scores_spec, trial_spec, trial_specs)
from .placement import SEARCHED, Placement
from .runs import (PLANNERS, Run, Trial, batch_files, batch_of, cached_plan, dataset_trials, default_variant,
                   gga_parameters, gga_placements, lr_batch_files, lr_families, lr_grid, lr_models, lr_trials,
                   num_batches, plan, plan_dataset, planned_runs, random_size, score_targets, training_batches,
                   variant_of)
from .searches import (Search, dataset_searches, head_steps, search_batch_files, search_batches,
                       search_file_of, search_inputs, search_item, search_items)
