# Every table of DESIGN.md section 6, as CSV (full precision, with the MLflow run ids behind each cell)
# and Markdown, in results/tables/. `snakemake table1` builds one table and only what it needs.
# One rule per product of adapter_placement.products (each declares its inputs; here they become paths).
from adapter_placement.products import PRODUCTS as REGISTRY
from adapter_placement.products.product import Batches, ModelInfos, Scores, SearchFiles


def table_context(experiments, scores=False, details=()):
    """The config parts a table or figure reads (its params: a changed value rebuilds exactly the
    tables and figures that read it); ``details``: more dataset keys (Table 2 reads sizes, steps)."""
    keys = ("task", "model", "batch_size", "rank", *details)
    context = {"experiments": {e: config["experiments"][e] for e in experiments},
               "datasets": {d: {k: e.get(k) for k in keys} for d, e in config["datasets"].items()},
               "models": {m: {"blocks": e["blocks"], "modality": e["modality"]} for m, e in config["models"].items()}}
    if scores:
        context["scores"] = config["scores"]
    return context


def scores_file(dataset, model=None):
    return P.scores_file(R, dataset, model or X.dataset_model(config, dataset))


def batches(experiment, datasets=None):
    if datasets is None:
        return X.batch_files(config, experiment)
    return [f for d in datasets for f in X.batch_files(config, experiment, d)]


def paper_csv(stem):
    """A table's numbers in the paper (paper/*.csv, in the repository beside the Snakefile)."""
    return str(Path(workflow.basedir, "paper", f"{stem}.csv"))


SCORES_DATASET = config["scores"]["dataset"]
EXP = config["experiments"]


def datasets_named(on):
    """The datasets an input declaration's ``on`` names (adapter_placement.products.product): "scores"
    (the scores config's dataset), "<experiment>.<field>" (that experiment's config field), or an
    experiment (the datasets it runs on)."""
    if on == "scores":
        return [SCORES_DATASET]
    if "." in on:
        experiment, field = on.split(".")
        value = EXP[experiment][field]
        return [value] if isinstance(value, str) else list(value)
    return X.experiment_datasets(config, on)


def input_paths(declaration):
    """The paths of one input declaration of a product."""
    if isinstance(declaration, Batches):
        return batches(declaration.experiment, None if declaration.on is None else datasets_named(declaration.on))
    if isinstance(declaration, Scores):
        if declaration.on == "scores":
            return scores_file(SCORES_DATASET)
        if declaration.on == "score_targets":
            return [scores_file(d, model=m) for d, m in X.score_targets(config)]
        return [scores_file(d) for d in datasets_named(declaration.on)]
    if isinstance(declaration, ModelInfos):
        models = ({m for _, m in X.score_targets(config)} if declaration.on == "score_targets"
                  else {X.dataset_model(config, d) for d in datasets_named(declaration.on)})
        return [P.model_info_file(R, m) for m in sorted(models)]
    if isinstance(declaration, SearchFiles):
        return X.search_batch_files(config)
    raise TypeError(f"unknown input declaration {declaration!r}")


def product_inputs(product):
    """A product's rule inputs: its declared inputs, and "paper" (its paper/*.csv) where it has one."""
    paths = {name: input_paths(declaration) for name, declaration in product.reads.items()}
    return {**paths, "paper": paper_csv(product.paper)} if product.paper else paths


def product_context(product):
    return table_context(product.experiments, product.reads_scores_config, product.dataset_details)


# The products of this config (adapter_placement.products): those beyond the paper only when the
# config has their experiment
PRODUCTS = [p for p in REGISTRY.values() if p.needs is None or EXP.get(p.needs)]
TABLES = [p.name for p in PRODUCTS if not p.is_figure]

for _table in (p for p in PRODUCTS if not p.is_figure):
    rule:
        name: _table.rule
        input:
            **product_inputs(_table),
        output:
            csv=P.table_file(R, _table.name),
            md=P.table_file(R, _table.name, "md"),
        log:
            log_file(_table.rule),
        params:
            **job(lambda w, name=_table.name, context=product_context(_table): {"name": name, "context": context}),
        shell:
            PIPELINE + " table {params.job:q} > {log} 2>&1"

    TABLE_RULES.append(_table.rule)
