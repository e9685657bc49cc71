# results/REPORT.md: every reproduced table next to the paper's numbers (paper/*.csv, transcribed from
# the paper), every figure, and one line per finding of the paper saying whether this run reproduced it.
# `snakemake --report report.html` adds the figures (flagged with report() in figures.smk).
# It also writes the findings (figure, claim, ours, criterion, statistic, verdict) and what this run
# learnt per dataset as CSV; it reads every training batch to know which runs collapsed (train loss
# at ln C), so that no finding counts them as evidence.

rule report:
    input:
        tables=[f"{R}/tables/{t}.csv" for t in TABLES],
        figure_data=[f"{R}/figure_data/{f}.csv" for f in FIGURES],
        figures=[f"{F}/{f}.png" for f in FIGURES],
        paper=sorted(str(p) for p in Path(workflow.basedir, "paper").glob("*.csv")),
        lr=[X.lr_file(R, d, m, f) for d, m, f in X.lr_families(config)],
        runs=[f for e in X.PLANNERS if e != "search" for f in X.batch_files(config, e)],
    output:
        report=report(f"{R}/REPORT.md", category="Report"),
        findings=f"{R}/tables/findings.csv",
        learnt=f"{R}/tables/learnt.csv",
    log:
        log_file("report"),
    params:
        **job(lambda w: {"results": R, "figures": F,
                           "tracking_uri": X.tracking_uri(config), "seeds": config["seeds"],
                           "chance": X.chance_levels(config), "scores_dataset": config["scores"]["dataset"],
                           "model_specs": {m: X.model_spec(config, m) for m in X.used_models(config)}}),
    shell:
        PIPELINE + " report {params.job:q} > {log} 2>&1"
