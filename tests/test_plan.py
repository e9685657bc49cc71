"""The pipeline's plan (pure functions of the config): runs, placement names as values, job specs,
paths, config checks; the App. K FLOP formulas and the lr selection: fast, no training."""
import copy
import json
from pathlib import Path

import pytest
import yaml

from adapter_placement import plan as X
from adapter_placement.plan import Placement, paths
from adapter_placement import placements
from adapter_placement.flops import forward_flops
from adapter_placement.data import known_tasks
from adapter_placement.pipeline import select_lr

ROOT = Path(__file__).resolve().parents[1]


def load(name):
    return yaml.safe_load((ROOT / name).read_text())


@pytest.fixture(scope="module")
def paper():
    return load("config/paper.yaml")


@pytest.fixture(scope="module")
def embedded():
    return load("config.yaml")


def test_paper_plans_have_the_papers_run_counts(paper):
    assert len(X.plan(paper, "fig1")) == 7 * 24 * 3
    assert len(X.plan(paper, "fig3")) == 7 * 81 * 3 == 1701
    assert len(X.plan(paper, "table1")) == 7 * 104 * 3
    assert len(X.plan(paper, "fig6c")) == 4 * 3 * 2
    # first-24 and last-24 are parallel_all: the figure takes Table 1's runs of it
    assert len(X.plan(paper, "fig6ab")) == 2 * (5 * 5 - 2) * 3
    assert not [r for r in X.plan(paper, "fig6ab") if str(r.placement) in ("first_24", "last_24")]
    # Table 5 (App. I): per rank, 12 FFN-parallel adapters (one run) and one adapter of rank 12r on
    # each of the 81 stride-3 grid edges; 4 ranks x (1 + 81) x 3 seeds
    assert len(X.plan(paper, "table5")) == 4 * (1 + 81) * 3 == 984
    # one job per run at paper scale
    assert len(X.training_batches(paper, "table1")) == 7 * 104 * 3


def test_table5_trains_every_grid_edge_at_its_own_rank(embedded):
    # ranks [4, 1] (config.yaml has [4]), the stride-4 grid of n = 13 ({0, 4, 8, 12}^2: 16 edges), 2 seeds
    assert len(X.plan(embedded, "table5")) == 1 * (1 + 16) * 2 == 34
    config = copy.deepcopy(embedded)
    config["experiments"]["table5"]["ranks"] = [4, 1]
    runs = X.plan(config, "table5")
    assert len(runs) == 2 * (1 + 16) * 2 == 68
    singles = {(str(r.placement), r.rank) for r in runs if r.placement.method == "edge"}
    assert ("edge_12_0", 24) in singles and ("edge_4_8", 6) in singles and len(singles) == 32
    assert {r.rank for r in runs if r.placement == Placement("ffn_parallel")} == {4, 1}


def test_batches_partition_the_plan(embedded):
    k = embedded["runs_per_job"]
    for experiment in X.TRAINING_EXPERIMENTS:
        for dataset in X.experiment_datasets(embedded, experiment):
            runs = list(X.plan_dataset(embedded, experiment, dataset))
            count = X.num_batches(len(runs), k)
            joined = [r for b in range(count) for r in X.batch_of(runs, b, k)]
            assert joined == runs and all(len(X.batch_of(runs, b, k)) <= k for b in range(count))
    with pytest.raises(ValueError, match="does not exist"):
        X.batch_of([1, 2, 3], 2, 2)


def test_run_folders_and_cells_are_unique(paper):
    for experiment in X.TRAINING_EXPERIMENTS:
        runs = X.plan(paper, experiment)
        assert len({r.folder("results") for r in runs}) == len(runs)
        assert len({r.cell for r in runs}) == len(runs) // len(paper["seeds"])


@pytest.mark.parametrize("name, n, expected", [
    ("parallel_7", 25, [(6, 7)]),
    ("edge_24_6", 25, [(24, 6)]),
    ("parallel_all", 13, [(k - 1, k) for k in range(1, 13)]),
    ("sequential_all", 13, [(k, k) for k in range(1, 13)]),
    ("ffn_parallel", 13, [(1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12)]),
    ("first_3", 25, [(0, 1), (1, 2), (2, 3)]),
    ("last_2", 25, [(22, 23), (23, 24)]),
    ("spread_3", 13, [(0, 1), (4, 5), (8, 9)]),
    ("spread_1", 25, [(0, 1)]),
    ("none", 25, []),
])
def test_placement_names(name, n, expected):
    assert Placement.parse(name).edges(n) == expected


def test_random_placements_are_the_seeded_draws():
    assert Placement.parse("random24_017").edges(25) == placements.random(25, 24, seed=17)
    nr = Placement.parse("randnr12_003").edges(25)
    assert len(nr) == 12 and all(i <= j for i, j in nr)
    assert nr == Placement("randnr", count=12, seed=3).edges(25)  # deterministic
    assert len(Placement("all_edges").edges(13)) == 169


def test_derived_and_unknown_placements():
    derived = {"gga_3": [[0, 1], [4, 2], [12, 12]]}
    assert Placement.parse("gga_3").edges(13, derived) == [(0, 1), (4, 2), (12, 12)]
    with pytest.raises(ValueError, match="'gga_3' comes from results"):
        Placement.parse("gga_3").edges(13)  # its file was not read
    with pytest.raises(ValueError, match="unknown placement 'diagonal_3'"):
        Placement.parse("diagonal_3")
    with pytest.raises(ValueError, match="outside the nodes"):
        Placement.parse("edge_3_13").edges(13)
    best = Placement.parse("best_random_mnli")
    assert paths.derived_placement_file("r", "sst2", "minilm", best) == "r/placements/mnli/best_random.json"
    assert X.gga_parameters({"experiments": {"fig6ab": {"gamma": 0.6}}}, Placement.parse("gga_40_g0.8")) == (40, 0.8)
    assert X.gga_parameters({"experiments": {"fig6ab": {"gamma": 0.6}}}, Placement.parse("topk_6")) == (6, 0.0)


def test_every_planned_placement_resolves(paper, embedded):
    for config in (paper, embedded):
        for experiment in X.TRAINING_EXPERIMENTS:
            for run in X.plan(config, experiment):
                assert Placement.parse(str(run.placement)) == run.placement, run
                if X.run_spec(config, run).io.derived_file is None:
                    run.placement.edges(X.num_nodes(config, run.model))


def test_lr_selection_covers_every_family_the_runs_use(paper):
    families = set(X.lr_families(paper))
    for experiment in X.TRAINING_EXPERIMENTS:
        for run in X.plan(paper, experiment):
            assert (run.dataset, run.model, run.family) in families
    trials = X.lr_trials(paper, "svhn", "vitb", "adapters")
    assert len(trials) == 4 * 2 * 3  # lrs x steps {500, 2000} x seeds
    assert {str(t.placement) for t in trials} == {"parallel_all"}


def test_a_changed_value_changes_only_the_plans_it_affects(embedded):
    changed = copy.deepcopy(embedded)
    changed["experiments"]["fig9"]["activations"] = ["gelu", "relu"]
    for experiment in X.TRAINING_EXPERIMENTS:
        same = X.plan(changed, experiment) == X.plan(embedded, experiment)
        assert same == (experiment != "fig9")


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["datasets"]["inat18"].update(task="imagenet"), r"datasets\.inat18\.task: unknown dataset 'imagenet'"),
    (lambda c: c["datasets"]["sst2"].update(model="roberta"), r"datasets\.sst2\.model: no model 'roberta'"),
    (lambda c: c["models"]["minilm"].pop("spec"), r"models\.minilm: missing model"),
    (lambda c: c["models"]["minilm"].update(spec="weights/vit.safetensors"),
     r"models\.minilm\.spec: missing model file 'weights/vit.safetensors'"),
    (lambda c: c["experiments"]["fig6c"].update(model="vitg"), r"experiments\.fig6c\.model: missing model 'vitg'"),
    (lambda c: c["models"]["vit"].update(spec="models/gone.safetensors"),
     r"models\.vit\.spec: missing model file 'models/gone.safetensors'"),
    (lambda c: c["experiments"]["fig6ab"].update(n=[1, 3, 24]), r"experiments\.fig6ab\.n\[2\]: 24 adapters"),
    (lambda c: c["datasets"].pop("svhn"), r"experiments\.fig1\.datasets\[2\]: unknown dataset 'svhn'"),
])
def test_check_config_names_the_bad_value(embedded, edit, message):
    bad = copy.deepcopy(embedded)
    edit(bad)
    with pytest.raises(X.ConfigError, match=message):
        X.check_config(bad, known_tasks(), path_exists=lambda path: path == "models/vit_digits.safetensors")


def test_model_spec_of_a_pretrained_model_follows_its_settings(embedded):
    assert X.model_spec(embedded, "vit") == "models/vit_digits.safetensors"  # committed, not retrained
    embedded = {**embedded, "rebuild_pretrained": True}
    spec = X.model_spec(embedded, "vit")
    assert spec.startswith("results/pretrain/vit-") and spec.endswith(".safetensors")
    other = copy.deepcopy(embedded)
    other["models"]["vit"]["pretrain"]["steps"] += 1
    assert X.model_spec(other, "vit") != spec
    assert X.model_spec(embedded, "minilm") == "minilm"


def footnote_8(n_seq, d_model, h, d_ffn, blocks):
    """App. K footnote 8 as printed: F = blocks * (F_mha + F_ffn), d_k = d_model / h."""
    d_k = d_model // h
    f_ffn = n_seq * (2 * d_model - 1) * d_ffn + n_seq * (2 * d_ffn - 1) * d_model
    f_mha = (3 * n_seq * (2 * d_model - 1) * d_k * h + n_seq ** 2 * 2 * d_k * h
             + n_seq * (2 * n_seq - 1) * d_k * h + n_seq * (2 * d_k * h - 1) * d_model)
    return blocks * (f_mha + f_ffn)


def test_forward_flops_are_footnote_8_exactly():
    # a small arch counted by hand: n_seq 5, d_model 8, h 2 (d_k 4), d_ffn 16, 2 blocks
    # F_ffn = 5*15*16 + 5*31*8 = 1200 + 1240 = 2440
    # F_mha = 3*5*15*4*2 + 25*2*4*2 + 5*9*4*2 + 5*15*8 = 1800 + 400 + 360 + 600 = 3160
    # F = 2 * (3160 + 2440) = 11200
    assert forward_flops(5, 8, 2, 16, 2) == 11200
    assert footnote_8(5, 8, 2, 16, 2) == 11200
    # ViT-B/16 (197 tokens, d 768, 12 heads, FFN 3072, 12 blocks): 34,876,753,920, the paper's ~34.9 G.
    # (A 1% miscount, e.g. d_k * h - 1 for 2 d_k h - 1 in F_up, would still round to 34.9 G.)
    assert forward_flops(197, 768, 12, 3072, 12) == footnote_8(197, 768, 12, 3072, 12) == 34_876_753_920
    assert round(34_876_753_920 / 1e9, 1) == 34.9
    # the other arguments each count where the footnote puts them (d_k h = d_model: heads cancel out)
    for args in [(7, 8, 2, 16, 2), (5, 12, 3, 16, 2), (5, 8, 2, 24, 2), (5, 8, 2, 16, 3), (5, 8, 4, 16, 2)]:
        assert forward_flops(*args) == footnote_8(*args), args


def test_select_lr_by_mean_val_accuracy_with_diverged_trials(tmp_path):
    def trial(lr, seed, acc, status="finished"):
        return {"key": {"family": "adapters", "lr": lr, "steps": 10, "seed": seed}, "status": status,
                "metrics": {} if acc is None else {"val_accuracy": acc, "mlflow_run_id": f"id{lr}{seed}"}}

    batch = tmp_path / "batch0.json"
    items = [trial(0.1, 0, 0.9), trial(0.1, 1, None, "diverged"), trial(0.01, 0, 0.6), trial(0.01, 1, 0.6),
             {**trial(0.001, 0, 0.99), "key": {"family": "linear_probe", "lr": 0.001, "steps": 10, "seed": 0}}]
    batch.write_text(json.dumps({"items": items}))
    out = tmp_path / "choice.json"
    job = {"spec": {"dataset": "d", "model": "m", "family": "adapters", "grid": [[0.1, 10], [0.01, 10]]},
           "input": {"batches": [str(batch)]}, "output": {"choice": str(out)}}
    choice = select_lr(job)
    assert (choice["lr"], choice["steps"]) == (0.01, 10)  # 0.6 beats (0.9 + 0) / 2; other families ignored
    assert json.loads(out.read_text())["candidates"][1]["diverged"] == 1
    single = select_lr({"spec": {**job["spec"], "grid": [[0.5, 7]]}, "input": {}, "output": {"choice": str(out)}})
    assert (single["lr"], single["steps"], single["candidates"]) == (0.5, 7, [])


# ---------------------------------------------------------------- placements as values, job specs

EVERY_FORM = ["none", "parallel_all", "sequential_all", "ffn_parallel", "all_edges", "parallel_7", "edge_24_6",
              "edge_0_0", "first_3", "last_12", "spread_6", "random24_017", "randnr12_003", "gga_12",
              "gga_40_g0.8", "topk_6", "topk_6_g0.5", "best_random_clevr_count", "iterative_gga12_000",
              "edge_switch3_002", "prune_magnitude6_001", "prune_taylor24_000"]


@pytest.mark.parametrize("name", EVERY_FORM)
def test_every_placement_name_round_trips(name):
    placement = Placement.parse(name)
    assert placement.format() == str(placement) == name
    assert Placement(**{k: v for k, v in placement.to_dict().items() if k != "name"}) == placement


def test_every_planned_name_is_one_of_the_forms(paper, embedded):
    forms = {Placement.parse(name).method for name in EVERY_FORM}
    for config in (paper, embedded):
        assert {r.placement.method for e in X.TRAINING_EXPERIMENTS for r in X.plan(config, e)} <= forms


@pytest.mark.parametrize("name, message", [
    ("diagonal_3", "unknown placement 'diagonal_3'"), ("random24_17", "'random24_17' is not written as .*'random24_017'"),
    ("gga_3_g1.0", "'gga_3_g1.0' is not written as .*'gga_3_g1'"), ("edge_1", "unknown placement 'edge_1'"),
])
def test_a_bad_placement_name_is_named_in_the_error(name, message):
    with pytest.raises(ValueError, match=message):
        Placement.parse(name)
    with pytest.raises(ValueError, match="no placement 'edge' with fields"):
        Placement("edge", i=1)


def test_placement_fields_say_what_the_tables_parse_from_names_today():
    # method: the selection method of Fig. 6 and the search table (the selection column of analysis.load_runs)
    assert [Placement.parse(n).method for n in ("gga_3", "topk_3", "random3_001", "first_3", "last_3")] == [
        "gga", "topk", "random", "first", "last"]
    assert Placement.parse("edge_switch12_000").method == "edge_switch"
    # single_edge: the edge column of analysis.load_runs
    assert Placement.parse("edge_4_2").single_edge == (4, 2) and Placement.parse("parallel_3").single_edge == (2, 3)
    assert Placement.parse("parallel_all").single_edge is None and Placement.parse("first_1").single_edge is None
    assert [Placement.parse(f"parallel_{k}").sublayer for k in (1, 2)] == ["MHA", "FFN"]
    assert [Placement.parse(n).size for n in ("none", "edge_1_1", "random24_000", "gga_40_g0.8", "all_edges")] == [
        0, 1, 24, 40, None]
    assert Placement.parse("gga_3").from_results and not Placement.parse("randnr3_000").from_results


def test_table1_draws_are_numbered_across_datasets_so_no_two_train_one_placement(embedded):
    draws = embedded["experiments"]["table1"]["random_draws"]
    by_dataset = {}
    for run in X.plan(embedded, "table1"):
        if run.placement.method == "random":
            by_dataset.setdefault(run.dataset, set()).add(run.placement.seed)
    datasets = embedded["experiments"]["table1"]["datasets"]
    assert [sorted(by_dataset[d]) for d in datasets] == [
        list(range(i * draws, (i + 1) * draws)) for i in range(len(datasets))]
    sst2, mnli = (set(map(tuple, Placement("random", count=12, seed=k).edges(13))) for k in
                  (min(by_dataset["sst2"]), min(by_dataset["mnli"])))
    assert sst2 != mnli  # Table 8 transfers a placement the other task did not draw itself


def test_a_models_precision_overrides_the_configs_in_its_jobs(embedded):
    config = copy.deepcopy(embedded)
    config["precision"] = "fp32"
    config["models"]["minilm"]["precision"] = "bf16"
    config["models"]["vit"].pop("precision", None)
    text = next(r for r in X.plan(config, "table1") if r.model == "minilm")
    vision = next(r for r in X.plan(config, "table1") if r.model == "vit")
    assert X.run_spec(config, text).recipe.precision == "bf16"
    assert X.run_spec(config, vision).recipe.precision == "fp32"
    assert X.scores_spec(config, "sst2", "minilm")["precision"] == "bf16"
    assert X.scores_spec(config, "clevr_count", "vit")["precision"] == "fp32"


def test_run_specs_round_trip_through_json(embedded):
    for experiment in X.TRAINING_EXPERIMENTS:
        for run in X.plan(embedded, experiment)[:5]:
            spec = X.run_spec(embedded, run)
            assert X.RunSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
            assert spec.to_json()["recipe"]["placement"] == run.placement.to_dict()
    trial = X.lr_trials(embedded, "inat18", "vit", "adapters")[0]
    spec = X.trial_spec(embedded, trial)
    assert X.RunSpec.from_json(json.loads(json.dumps(spec.to_json()))) == spec
    assert (spec.recipe.lr, spec.recipe.steps, spec.io.lr_file) == (trial.lr, trial.steps, None)


def test_a_run_spec_is_the_train_config_of_the_run(embedded):
    from adapter_placement.train import TrainConfig

    run = next(r for r in X.plan(embedded, "fig9") if r.activation == "relu")
    spec = X.run_spec(embedded, run)
    cfg = TrainConfig.from_spec(spec, run.placement.edges(spec.num_nodes), 0.01, 30)
    entry = embedded["datasets"][run.dataset]
    assert (cfg.dataset, cfg.model, cfg.activation, cfg.rank, cfg.seed) == (
        entry["task"], X.model_spec(embedded, run.model), "relu", run.rank, run.seed)
    assert (cfg.train_split, cfg.eval_splits, cfg.lr, cfg.steps, cfg.progress) == ("train+val", ("test",), 0.01, 30, False)
    assert cfg.tags["placement"] == str(run.placement) and cfg.tags["variant"] == run.variant
    assert spec.io.folder == run.folder("results") == paths.run_folder(
        "results", "fig9", run.dataset, run.variant, str(run.placement), run.seed)
    assert spec.io.lr_file == paths.lr_file("results", run.dataset, run.model, "adapters")


def test_all_n2_adapters_select_their_own_lr_on_trials_of_all_n2_adapters():
    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "config.yaml").read_text())
    run = X.plan(config, "fig15")[0]
    assert run.method == "adapters" and run.family == "all_edges"
    assert X.run_spec(config, run).io.lr_file == paths.lr_file("results", "sst2", "minilm", "all_edges")
    trials = X.lr_trials(config, "sst2", "minilm", "all_edges")
    # its own grid, each candidate trained as all n^2 adapters (train -> val)
    assert [t.lr for t in trials] == config["lr_grid"]["text"]["all_edges"] == [0.001, 0.003]
    without = copy.deepcopy(config)
    del without["lr_grid"]["text"]["all_edges"]
    without["lr_grid"]["text"]["adapters"] = [0.001, 0.01]  # no grid of its own: the adapters' candidates
    assert [t.lr for t in X.lr_trials(without, "sst2", "minilm", "all_edges")] == [0.001, 0.01]
    spec = X.trial_spec(config, trials[0])
    assert spec.recipe.method == "adapters" and str(spec.recipe.placement) == "all_edges"
    assert ("sst2", "minilm", "all_edges") in X.lr_families(config)
    # every other adapter run keeps the adapters' selection
    assert {r.family for r in X.plan(config, "table1") if r.method == "adapters"} == {"adapters"}


def test_command_line_values_are_read_as_yaml_reads_them():
    assert X.command_line_values(["2", "3"]) == [2, 3]
    assert X.command_line_values({"a": ["0.5", "x"], "b": "results"}) == {"a": [0.5, "x"], "b": "results"}
    assert X.command_line_values(["true", "null", ""]) == ["true", None, ""]  # numbers and null change
    assert X.command_line_values({"search": {"candidates": "null", "n": ["12"]}}) == {"search": {"candidates": None, "n": [12]}}
    assert X.command_line_values(7) == 7


def test_repeats_add_seeds_that_another_seed_set_moves_too(embedded):
    config = copy.deepcopy(embedded)
    config["seeds"] = [2, 3]
    config["experiments"]["table7"]["repeats"] = 3
    assert X.experiment_seeds(config, "table7") == [2, 3, 1002, 1003, 2002, 2003]
    assert X.experiment_seeds(config, "fig9") == [2, 3]  # no repeats: the run's seeds
    seeds = {(str(r.placement), r.seed) for r in X.plan(config, "table7")}
    assert {s for p, s in seeds if p == "first_6"} == {2, 3, 1002, 1003, 2002, 2003}
    assert len(seeds) == len(X.plan(config, "table7"))  # no run twice


def test_table8_repeats_train_the_tailored_placement_at_the_seeds_table1_lacks(embedded):
    config = copy.deepcopy(embedded)
    config["experiments"]["table8"]["repeats"] = 2
    runs = {(r.dataset, str(r.placement), r.seed) for r in X.plan(config, "table8")}
    assert runs == {("mnli", "best_random_sst2", s) for s in (0, 1, 1000, 1001)} | \
        {("sst2", "best_random_mnli", s) for s in (0, 1, 1000, 1001)} | \
        {("sst2", "best_random_sst2", s) for s in (1000, 1001)} | {("mnli", "best_random_mnli", s) for s in (1000, 1001)}
    config["experiments"]["table8"].pop("repeats")
    assert {p for _, p, _ in ((r.dataset, str(r.placement), r.seed) for r in X.plan(config, "table8"))} == {
        "best_random_sst2", "best_random_mnli"} and len(X.plan(config, "table8")) == 4


def test_repeats_that_would_meet_a_seed_of_the_run_are_refused(embedded):
    bad = copy.deepcopy(embedded)
    bad["seeds"] = [0, 1000]
    bad["experiments"]["table7"]["repeats"] = 2
    with pytest.raises(X.ConfigError, match=r"experiments\.table7\.repeats: 2 repeats .* \(seeds: \[0, 1000\]\)"):
        X.check_config(bad, known_tasks(), path_exists=lambda path: True)


def test_auto_precision_is_measured_once_per_results_folder(embedded, tmp_path, monkeypatch):
    from conftest import MEASURED_HOST_PRECISION as real

    from adapter_placement import device
    from adapter_placement.plan import config as C

    monkeypatch.setattr(C, "host_precision", real)  # conftest plans fp32; this test measures
    calls = []
    monkeypatch.setattr(device, "choose_precision",
                        lambda dev, threads=1: calls.append(threads) or ("bf16", {"fp32": 1.0, "bf16": 0.5}))
    real.cache_clear()
    config = {**copy.deepcopy(embedded), "results": str(tmp_path / "results")}
    config["models"]["minilm"]["precision"] = "auto"
    assert C.model_precision(config, "minilm") == "bf16"
    record = json.loads(Path(paths.host_precision_file(config["results"])).read_text())
    assert record["precision"] == "bf16" and record["seconds_per_pass"] == {"fp32": 1.0, "bf16": 0.5}
    real.cache_clear()  # a new process: the file answers, nothing is measured again
    assert C.model_precision(config, "minilm") == "bf16" and calls == [1]
    assert C.model_precision(config, "vit") == "fp32"  # the config's own, not auto
    monkeypatch.setattr(device, "choose_precision", lambda dev, threads=1: ("fp32", {}))
    real.cache_clear()
    other = {**config, "results": str(tmp_path / "other")}  # another results folder measures again
    assert C.model_precision(other, "minilm") == "fp32"
    real.cache_clear()
    Path(paths.host_precision_file(other["results"])).write_text("{half a file")
    with pytest.raises(ValueError, match="host_precision.json is not the JSON"):
        C.model_precision(other, "minilm")
    real.cache_clear()
