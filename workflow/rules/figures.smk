# Every figure of DESIGN.md section 6 (seaborn), as PNG and PDF in figures/, and its data as CSV in
# results/figure_data/. `snakemake figure6` draws Fig. 6a, 6b and 6c and runs only what they need.

FIG3_SCORES = lambda: [scores_file(d) for d in EXP["fig3"]["datasets"]]

# name: (title, experiments it reads, reads the scores config, its inputs)
FIGURES = {
    "fig1": ("Fig. 1: one parallel adapter at each position", ["fig1", "table1"], False,
             lambda: {"fig1": batches("fig1"), "table1": batches("table1")}),
    "fig3": ("Fig. 3: one adapter on each grid edge", ["fig3", "table1"], False,
             lambda: {"fig3": batches("fig3"), "table1": batches("table1")}),
    "fig4": ("Fig. 4: Spearman between datasets", ["fig3"], False, lambda: {"fig3": batches("fig3")}),
    "fig5": ("Fig. 5: srank of the gradient vs test accuracy", ["fig3"], True,
             lambda: {"fig3": batches("fig3"), "scores": FIG3_SCORES()}),
    "fig6": ("Fig. 6: GGA, top-k, random, first-k, last-k (a, b); rank sweep (c)", ["fig6ab", "fig6c", "table1"], False,
             lambda: {"fig6ab": batches("fig6ab"), "fig6c": batches("fig6c"),
                      "table1": batches("table1", EXP["fig6ab"]["datasets"])}),
    "fig7": ("Fig. 7: MHA vs FFN parallel adapter per block", ["fig1", "table1"], False,
             lambda: {"fig1": batches("fig1"), "table1": batches("table1")}),
    "fig8": ("Fig. 8: linear vs non-linear single adapters", ["fig8"], False,
             lambda: {"fig8": batches("fig8"), "fig3": batches("fig3", [EXP["fig8"]["dataset"]])}),
    "fig9": ("Fig. 9: activation vs number of parallel adapters", ["fig9"], False, lambda: {"fig9": batches("fig9")}),
    "fig10": ("Fig. 10: score functions: matrices and vs train loss", [], True,
              lambda: {"fig3": batches("fig3", [SCORES_DATASET]), "scores": scores_file(SCORES_DATASET)}),
    "fig11": ("Fig. 11: srank of the gradient vs train loss", ["fig3"], True,
              lambda: {"fig3": batches("fig3"), "scores": FIG3_SCORES()}),
    "fig12": ("Fig. 12: test accuracy vs train loss", ["fig3"], False, lambda: {"fig3": batches("fig3")}),
    "fig13": ("Fig. 13: eta and head pre-training steps vs correlation", [], True,
              lambda: {"fig3": batches("fig3", [SCORES_DATASET]), "scores": scores_file(SCORES_DATASET)}),
    "fig14": ("Fig. 14: GGA's discount matrix and the score matrix after selection", ["fig6ab"], True,
              lambda: {"scores": scores_file(SCORES_DATASET)}),
    "fig15": ("Fig. 15: all n^2 adapters vs the best random placement", ["fig15", "table1"], False,
              lambda: {"fig15": batches("fig15"), "table1": batches("table1", [EXP["fig15"]["dataset"]])}),
}

if EXP.get("search"):  # beyond the paper, optional
    FIGURES["fig_search"] = ("Placement search: test accuracy vs N and vs compute", ["search"], False, SEARCH_INPUTS)

for _figure, (_title, _experiments, _scores, _inputs) in FIGURES.items():
    rule:
        name: _figure.replace("fig", "figure")
        input:
            **_inputs(),
        output:
            png=report(f"{F}/{_figure}.png", category="Figures", labels={"figure": _title.split(":")[0]}),
            pdf=f"{F}/{_figure}.pdf",
            data=f"{R}/figure_data/{_figure}.csv",
        log:
            log_file(_figure.replace("fig", "figure")),
        params:
            **job(lambda w, name=_figure, title=_title, context=table_context(_experiments, _scores):
                    {"name": name, "title": title, "context": context}),
        shell:
            PIPELINE + " figure {params.job:q} > {log} 2>&1"

    FIGURE_RULES.append(_figure.replace("fig", "figure"))
