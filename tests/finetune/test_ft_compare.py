"""The comparison's axes, statistics and tables, checked against a hand-made table."""
import math

import pytest

from densechange.engine.errors import ConfigError
from densechange.finetune.compare.grid import BUILTIN_VARIANTS, Grid, encoder_label, parse_encoders, parse_fractions, parse_seeds, parse_variants
from densechange.finetune.compare.runner import Settings
from densechange.finetune.compare.stats import Baseline, paired_differences, sign_test, summarise
from densechange.finetune.compare.tables import means_table, nuisance_table, paired_table, render_markdown


def _rows():
    """F1 and FPR under pseudo-change of three cells over three seeds, plus one cell at a lower fraction."""
    table = {
        ("random", "deepcl", 1.0): ([0.50, 0.60, 0.55], [0.10, 0.20, 0.30]),
        ("sadl", "deepcl", 1.0): ([0.53, 0.58, 0.60], [0.05, 0.25, 0.20]),
        ("sadl", "no_metric", 1.0): ([0.51, 0.61, 0.57], [0.10, 0.20, 0.30]),
        ("sadl", "deepcl", 0.2): ([0.40, 0.45], [0.30, 0.35]),
    }
    return [{"encoder": e, "variant": v, "fraction": f, "seed": s, "f1": f1[s], "pc_f1": f1[s], "pc_fpr": fpr[s],
             "iou": f1[s] / 2, "kappa": f1[s] - 0.1, "auroc": 0.9, "pc_auroc": 0.9 - fpr[s], "pc_flips": fpr[s] / 2,
             "pc_induced_fa": fpr[s] / 4, **{f"pc_{n}_flips": fpr[s] / k for k, n in ((4, "colour"), (5, "blur"), (10, "shift"))}}
            for (e, v, f), (f1, fpr) in table.items() for s in range(len(f1))]


def test_summaries_and_sign_test():
    s = summarise([0.50, 0.60, 0.55])
    assert s.mean == pytest.approx(0.55) and s.std == pytest.approx(0.05) and s.n == 3  # sample std, ddof=1
    assert math.isnan(summarise([0.4]).std)
    assert sign_test(3, 0) == pytest.approx(0.25) and sign_test(2, 1) == 1.0
    assert sign_test(6, 0) == pytest.approx(2 / 64) and sign_test(5, 1) == pytest.approx(2 * 7 / 64)
    assert sign_test(0, 0) == 1.0


def test_paired_differences_by_hand():
    diffs = {d.group: d for d in paired_differences(_rows(), Baseline.parse("random/deepcl"), "f1")}
    assert set(diffs) == {("sadl", "deepcl", 1.0), ("sadl", "no_metric", 1.0)}  # 0.2 has no random/deepcl@0.2
    d = diffs[("sadl", "deepcl", 1.0)]
    assert d.seeds == (0, 1, 2) and d.diffs == pytest.approx((0.03, -0.02, 0.05))
    assert d.mean == pytest.approx(0.02) and d.std == pytest.approx(math.sqrt(0.0013))
    assert (d.higher, d.lower, d.sign_p) == (2, 1, 1.0)
    assert d.signs() == "higher on 2, lower on 1 of 3 seeds" and d.support() == "mixed signs: no consistent difference"
    e = diffs[("sadl", "no_metric", 1.0)]
    assert e.diffs == pytest.approx((0.01, 0.01, 0.02)) and e.higher == 3 and e.sign_p == pytest.approx(0.25)
    assert e.support() == "same sign on all 3 seeds, too few for a sign test to exclude chance (p=0.25)"
    fpr = {d.group: d for d in paired_differences(_rows(), Baseline.parse("random/deepcl"), "pc_fpr")}
    assert fpr[("sadl", "deepcl", 1.0)].diffs == pytest.approx((-0.05, 0.05, -0.10))
    # a fixed baseline fraction pairs the 20% cell with the 100% baseline, over the seeds both ran
    fixed = {d.group: d for d in paired_differences(_rows(), Baseline.parse("random/deepcl@1"), "f1")}
    low = fixed[("sadl", "deepcl", 0.2)]
    assert low.baseline == ("random", "deepcl", 1.0) and low.seeds == (0, 1)
    assert low.diffs == pytest.approx((-0.10, -0.15)) and low.lower == 2 and low.signs() == "lower on 2 of 2 seeds"
    with pytest.raises(ConfigError, match="baseline imagenet/deepcl is not a cell"):
        paired_differences(_rows(), Baseline.parse("imagenet/deepcl"), "f1")


def test_tables_show_means_and_paired_differences():
    rows = _rows()
    table = means_table(rows)
    assert ("| random | deepcl | 1 | 3 | 0.550 ± 0.050 | 0.275 ± 0.025 | 0.450 ± 0.050 | 0.900 ± 0.000 | 0.550 ± 0.050 | "
            "0.200 ± 0.100 | 0.700 ± 0.100 | 0.100 ± 0.050 | 0.050 ± 0.025 |") in table
    per_nuisance = nuisance_table(rows)  # flip rate all, colour, blur, shift; induced FA ...; AUROC ... (n/a: not run)
    assert "| random | deepcl | 1 | 3 | 0.100 ± 0.050 | 0.050 ± 0.025 | 0.040 ± 0.020 | 0.020 ± 0.010 | 0.050 ± 0.025 | n/a |" in per_nuisance
    assert "| sadl | deepcl | 0.2 | 2 | 0.425 ± 0.035 |" in table
    paired = paired_table(rows, Baseline.parse("random/deepcl"))
    assert ("| sadl/deepcl | 1 | random/deepcl @ 1 | +0.020 ± 0.036, higher on 2, lower on 1 of 3 seeds | "
            "+0.020 ± 0.036, higher on 2, lower on 1 of 3 seeds | -0.033 ± 0.076, higher on 1, lower on 2 of 3 seeds | "
            "+0.033 ± 0.076, higher on 2, lower on 1 of 3 seeds | -0.017 ± 0.038, higher on 1, lower on 2 of 3 seeds | "
            "-0.008 ± 0.019, higher on 1, lower on 2 of 3 seeds | mixed signs: no consistent difference |") in paired
    text = render_markdown(rows, [Baseline.parse("random/deepcl"), Baseline.parse("sadl/no_metric")], ["context line"])
    assert text.startswith("# Comparison\ncontext line\n") and "## What the nuisances alone did" in text
    assert "## Paired by seed against random/deepcl at the same fraction" in text
    assert "## Paired by seed against sadl/no_metric at the same fraction" in text
    partial = render_markdown(rows, [Baseline.parse("sadl/gamma0")])
    assert "## Paired by seed against sadl/gamma0 at the same fraction\n\nNo finished run of sadl/gamma0 yet." in partial


def test_axes_parse_and_reject_bad_input():
    encoders = parse_encoders(["random", " sadl=runs/x/encoder.safetensors", "runs/y/encoder.safetensors", "w/my_weights.pth",
                               "resnet18_imagenet"])
    assert [(e.label, e.source) for e in encoders] == [
        ("random", "random"), ("sadl", "runs/x/encoder.safetensors"), ("y", "runs/y/encoder.safetensors"),
        ("my_weights", "w/my_weights.pth"), ("resnet18_imagenet", "resnet18_imagenet")]
    assert encoder_label("https://host/a/b/enc_v2.safetensors?dl=1") == "enc_v2"
    variants = parse_variants(["no_metric", "lowlr", "deepcl"], ["lowlr:trainer.optim.lr=1e-4", "lowlr:model.dice_weight=0",
                                                         "concat:model.prior=concat"])
    assert [(v.name, v.overrides) for v in variants] == [
        ("no_metric", BUILTIN_VARIANTS["no_metric"]), ("lowlr", ("trainer.optim.lr=1e-4", "model.dice_weight=0")),
        ("deepcl", ()), ("concat", ("model.prior=concat",))]
    assert BUILTIN_VARIANTS["gamma0"] == ("model.hscl_gamma=0",) and BUILTIN_VARIANTS["no_metric"] == ("model.metric_branch=false",)
    assert parse_fractions([0.2, 1]) == (0.2, 1.0) and parse_seeds([0, 1, 2]) == (0, 1, 2)
    grid = Grid(encoders[:2], variants[:2], (0.2, 1.0), (0, 1))
    cells = grid.cells()
    assert len(cells) == 16 and [c.seed for c in cells[:8]] == [0] * 8  # whole seeds first
    assert cells[0].overrides() == ["model.encoder=random", "model.metric_branch=false", "data.fraction=0.2",
                                    "data.fraction_seed=0", "run.seed=0"]
    for call, message in [
        (lambda: parse_encoders(["random", "random"]), "encoder random given twice"),
        (lambda: parse_encoders(["bad label=x.safetensors"]), "label 'bad label'"),
        (lambda: parse_variants(["deepcl", "nope"], []), "unknown variant 'nope'"),
        (lambda: parse_variants(["deepcl"], ["deepcl:model.prior=none"]), "built-in variant"),
        (lambda: parse_variants(["deepcl"], ["lowlr=1"]), "NAME:KEY=VALUE"),
        (lambda: parse_fractions([0.2, 1.5]), "data.fraction=1.5"),
        (lambda: parse_seeds([0, 0]), "seed 0 given twice"),
        (lambda: Baseline.parse("random"), "ENCODER/VARIANT"),
        (lambda: Settings(None, ["run.seed=3"]).check(), "run.seed is set for each cell"),
        (lambda: Settings(None, ["trainer.epochs=3"], steps=10).check(), "trainer.epochs is set for each cell"),
    ]:
        with pytest.raises(ConfigError, match=message):
            call()
