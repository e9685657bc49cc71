# Every figure of DESIGN.md section 6 (seaborn), as PNG and PDF in figures/, and its data as CSV in
# results/figure_data/. `snakemake figure6` draws Fig. 6a, 6b and 6c and runs only what they need.
# One rule per figure product of adapter_placement.products (tables.smk: PRODUCTS, product_inputs).

FIGURES = [p.name for p in PRODUCTS if p.is_figure]

for _figure in (p for p in PRODUCTS if p.is_figure):
    rule:
        name: _figure.rule
        input:
            **product_inputs(_figure),
        output:
            png=report(P.figure_file(F, _figure.name), category="Figures", labels={"figure": _figure.title.split(":")[0]}),
            pdf=P.figure_file(F, _figure.name, "pdf"),
            data=P.figure_data_file(R, _figure.name),
        log:
            log_file(_figure.rule),
        params:
            **job(lambda w, name=_figure.name, title=_figure.title, context=product_context(_figure):
                    {"name": name, "title": title, "context": context}),
        shell:
            PIPELINE + " figure {params.job:q} > {log} 2>&1"

    FIGURE_RULES.append(_figure.rule)
