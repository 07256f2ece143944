"""``densechange pretrain`` without a YAML file trains the reference recipe, except where the key's description says why not."""
from pathlib import Path

from densechange.engine.config import load_config, to_dict
from densechange.engine.config_docs import describe
from densechange.pretrain.config import CHOICES, PretrainConfig

RECIPE = Path(__file__).resolve().parents[2] / "configs" / "pretrain" / "sadl_resnet18.yaml"
# Keys where the defaults differ from the recipe on purpose; each key's description (the config reference) says so.
ON_PURPOSE = {"data.mean", "data.std"}
# Keys the recipe sets for a long run that the reference does not define (paths, workers, checkpoint cadence).
RUN_SETTINGS = {"run.dir", "trainer.num_workers", "trainer.save_every"}


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_defaults_are_the_reference_recipe():
    defaults = _flat(to_dict(load_config(PretrainConfig, None, ["data.root=x"], choices=CHOICES)))
    recipe = _flat(to_dict(load_config(PretrainConfig, RECIPE, ["data.root=x"], choices=CHOICES)))
    differ = {k for k in defaults if defaults[k] != recipe[k]}
    assert differ == ON_PURPOSE | RUN_SETTINGS, differ
    assert recipe["trainer.optim.decay_norm_and_bias"] is True and recipe["trainer.channels_last"] is True
    assert (recipe["data.mean"], recipe["data.std"]) == ([0.5] * 3, [0.5] * 3)  # the reference's normalisation


def test_the_reference_explains_the_defaults_that_differ():
    docs = {k.name: k.doc for k in describe(PretrainConfig)}
    for key in ON_PURPOSE:
        assert "reference" in docs[key], (key, docs[key])
