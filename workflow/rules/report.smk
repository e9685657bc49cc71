# results/REPORT.md: every reproduced table next to the paper's numbers (paper/*.csv, transcribed from
# the paper), every figure, and one line per finding of the paper saying whether this run reproduced it.
# `snakemake --report report.html` adds the figures (flagged with report() in figures.smk).
# It also writes the findings (figure, claim, ours, criterion, statistic, verdict) and what this run
# learnt per dataset as CSV; it reads every training batch to know which runs collapsed (train loss
# at ln C), so that no finding counts them as evidence.

rule report:
    input:
        tables=[P.table_file(R, t) for t in TABLES],
        figure_data=[P.figure_data_file(R, f) for f in FIGURES],
        figures=[P.figure_file(F, f) for f in FIGURES],
        paper=sorted(str(p) for p in Path(workflow.basedir, "paper").glob("*.csv")),
        lr=[P.lr_file(R, d, m, f) for d, m, f in X.lr_families(config)],
        runs=[f for e in X.PLANNERS if e != "search" for f in X.batch_files(config, e)],
    output:
        report=report(P.report_file(R), category="Report"),
        findings=P.table_file(R, "findings"),
        learnt=P.table_file(R, "learnt"),
    log:
        log_file("report"),
    params:
        **job(lambda w: {"results": R, "figures": F,
                           "tracking_uri": X.tracking_uri(config), "seeds": config["seeds"],
                           "chance": X.chance_levels(config), "scores_dataset": config["scores"]["dataset"],
                           "model_specs": {m: X.model_spec(config, m) for m in X.used_models(config)}}),
    shell:
        PIPELINE + " report {params.job:q} > {log} 2>&1"
