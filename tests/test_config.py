import tomllib

import pytest

from wavegen.config import (
    Config,
    DataConfig,
    apply_overrides,
    differences,
    known_keys,
    to_toml,
)
from wavegen.errors import ConfigError
from wavegen.recipe import load_recipe, shipped_recipes
from wavegen.run_config import load_toml

ISSUE_KEYS = [
    "model.cycles",
    "model.layers_per_cycle",
    "model.kernel_size",
    "model.residual_channels",
    "model.gate_channels",
    "model.skip_channels",
    "train.batch_size",
    "train.segment_length",
    "train.lr",
    "train.steps",
    "train.checkpoint_every",
    "train.seed",
]


def test_recipes_load_and_default_matches_the_documented_shape():
    tiny, default = load_recipe("tiny"), load_recipe("default")
    assert tiny.model.residual_channels < default.model.residual_channels
    m = default.model
    assert (m.cycles, m.layers_per_cycle, m.residual_channels, m.gate_channels, m.skip_channels) == (
        3,
        10,
        64,
        128,
        256,
    )


def test_overrides_are_typed():
    config = apply_overrides(Config(), ["model.cycles=2", "train.lr=3e-4", "data.trim_silence=yes"])
    assert config.model.cycles == 2 and isinstance(config.model.cycles, int)
    assert config.train.lr == pytest.approx(3e-4)
    assert config.data.trim_silence is True
    assert set(ISSUE_KEYS) <= set(known_keys())


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.colour=3", "unknown setting 'model.colour'"),
        ("nosection=3", "unknown setting"),
        ("model.cycles=2.5", "expected int"),
        ("train.lr=fast", "expected float"),
        ("data.trim_silence=maybe", "expected bool"),
        ("train.steps", "expected section.key=value"),
        ("train.batch_size=0", "must be in \\(0, 65536\\]"),
        ("data.label_source=speakers", "'data.label_source' must be 'none' or 'folders'"),
        ("data.labels=speakers", "'data.label_source' must be 'none' or 'folders'"),  # the old name
        ("data.channel=left", "'data.channel' must be 'mix' or a channel number"),
        ("data.channel=-1", "'data.channel' must be 'mix' or a channel number"),
        ("data.channel=1.5", "'data.channel' must be 'mix' or a channel number"),
        ("data.mel_n_fft=100", "'data.mel_n_fft' \\(100\\) must be >= 'data.mel_hop' \\(256\\)"),
        ("data.mel_fmax=9000", "mel_fmin/mel_fmax"),
        ("model.mel_channels=80", "must be set together"),
        ("model.labels=a,b,a", "repeated names"),
        ("train.precision=fp16", "'train.precision' must be one of auto, fp32, bf16"),
    ],
)
def test_bad_overrides_are_refused_with_a_clear_message(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(Config(), [override])


def test_recipe_with_unknown_or_mistyped_key_is_refused(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[model]\ncycels = 2\n")
    with pytest.raises(ConfigError, match="unknown setting 'model.cycels'"):
        load_recipe(str(bad))
    bad.write_text('[train]\nsteps = "many"\n')
    with pytest.raises(ConfigError, match="'train.steps' must be int"):
        load_recipe(str(bad))
    with pytest.raises(ConfigError, match="unknown recipe 'nope'"):
        load_recipe("nope")


def test_conditioning_recipes_and_list_settings():
    vocoder, speakers = load_recipe("vocoder"), load_recipe("speakers")
    assert (vocoder.data.mel_bands, vocoder.data.mel_hop, vocoder.model.cycles) == (80, 256, 2)
    assert speakers.data.label_source == "folders" and speakers.data.mel_bands == 0
    config = apply_overrides(Config(), ["model.labels= low, high "])
    assert config.model.labels == ["low", "high"]
    with pytest.raises(ConfigError, match="'model.labels' must be list"):
        Config.from_dict({"model": {"labels": ["a", 3]}})


def test_resolved_config_round_trips_through_toml(tmp_path):
    config = apply_overrides(
        load_recipe("tiny"),
        ["train.lr=0.01", "model.cycles=2", "model.labels=a,b", "model.mel_channels=20", "model.mel_hop=128"],
    )
    path = tmp_path / "config.toml"
    path.write_text(to_toml(config))
    assert load_toml(path) == config


@pytest.mark.parametrize(
    "typo, nearest",
    [
        ("train.lrr", "train.lr"),
        ("train.stepz", "train.steps"),
        ("model.cycels", "model.cycles"),
        ("trian.lr", "train.lr"),
        ("train.batchsize", "train.batch_size"),
        ("lrr", "train.lr"),
        ("data.mel_band", "data.mel_bands"),
        ("data.melss", "data.mel_bands"),  # near an old name: the setting's new one
        ("data.label", "data.label_source"),
    ],
)
def test_a_mistyped_setting_is_answered_with_the_nearest_key(typo, nearest):
    with pytest.raises(ConfigError) as refused:
        apply_overrides(Config(), [f"{typo}=1"])
    assert str(refused.value) == f"--set: unknown setting '{typo}' (did you mean {nearest}?)"


def test_an_unrelated_setting_lists_every_key():
    with pytest.raises(ConfigError) as refused:
        apply_overrides(Config(), ["model.colour=red"])
    assert "did you mean" not in str(refused.value)
    assert f"(known: {', '.join(known_keys())})" in str(refused.value)


def test_recipe_files_and_run_config_edits_get_the_nearest_key_too(tmp_path):
    from wavegen.run_config import read_edits

    (tmp_path / "typo.toml").write_text("[train]\nlrr = 0.1\n")
    with pytest.raises(ConfigError, match=r"typo.toml: unknown setting 'train.lrr' \(did you mean train.lr\?\)"):
        load_recipe(str(tmp_path / "typo.toml"))
    (tmp_path / "config.toml").write_text("[model]\ncycels = 2\n")
    with pytest.raises(
        ConfigError, match=r"config.toml: unknown setting 'model.cycels' \(did you mean model.cycles\?\)"
    ):
        read_edits(tmp_path, Config())


def test_config_override_checks_as_set_does():
    config = load_recipe("tiny")
    assert config.override("train.lr=1e-3", "model.cycles=2") is config
    assert (config.train.lr, config.model.cycles) == (1e-3, 2)
    with pytest.raises(ConfigError, match=r"did you mean train.lr\?"):
        config.override("train.lrr=1")
    with pytest.raises(ConfigError, match="expected float"):
        config.override("train.lr=fast")


# What each shipped recipe resolved to before the recipes extended default (captured from the
# standalone files), as the settings that differ from the dataclass defaults.
SHIPPED = {
    "default": {},
    "tiny": {
        "model.cycles": 1,
        "model.layers_per_cycle": 7,
        "model.residual_channels": 16,
        "model.gate_channels": 32,
        "model.skip_channels": 32,
        "train.segment_length": 1000,
        "train.lr": 0.003,
        "train.warmup_steps": 50,
        "train.steps": 600,
        "train.checkpoint_every": 200,
        "train.val_every": 100,
        "train.val_batches": 4,
        "train.log_every": 10,
        "train.sample_every": 0,
        "train.threads": 1,
    },
    "small": {
        "model.cycles": 2,
        "train.batch_size": 4,
        "train.segment_length": 4000,
        "train.steps": 20000,
        "train.checkpoint_every": 250,
        "train.val_every": 250,
        "train.val_batches": 8,
        "train.log_every": 10,
        "train.sample_every": 1000,
    },
    "speakers": {"data.label_source": "folders"},
    "vocoder": {"model.cycles": 2, "data.mel_bands": 80, "data.mel_fmax": 8000.0},
}


def test_default_recipe_says_what_the_dataclass_defaults_say():
    raw = tomllib.loads((shipped_recipes() / "default.toml").read_text(encoding="utf-8"))
    defaults = Config().to_dict()
    for section, values in raw.items():
        for key, value in values.items():
            assert defaults[section][key] == value, f"default.toml {section}.{key}"
    assert load_recipe("default") == Config()


def test_every_shipped_recipe_resolves_as_before():
    shipped = sorted(p.name[:-5] for p in shipped_recipes().iterdir() if p.name.endswith(".toml"))
    assert shipped == sorted(SHIPPED)
    for name in shipped:
        changed = {key: after for key, _, after in differences(Config(), load_recipe(name))}
        assert changed == SHIPPED[name], name
    assert "extends" in (shipped_recipes() / "speakers.toml").read_text()  # variations say only what differs


def test_extends_chains_and_the_working_folder_takes_precedence(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "default.toml").write_text("[train]\nlr = 0.5\n")  # shadows the shipped one
    (tmp_path / "recipes" / "mine.toml").write_text('extends = "small"\n[train]\nsteps = 7\n')
    (tmp_path / "recipes" / "small.toml").write_text('extends = "default"\n[model]\ncycles = 1\n')
    mine = load_recipe("mine")
    assert (mine.train.steps, mine.model.cycles, mine.train.lr) == (7, 1, 0.5)
    assert load_recipe("default").train.lr == 0.5
    # a shipped recipe extends the shipped default, whatever ./recipes holds
    assert load_recipe("speakers").train.lr == Config().train.lr
    assert load_recipe(str(tmp_path / "recipes" / "mine.toml")) == mine  # --recipe FILE.toml
    with pytest.raises(
        ConfigError, match=r"unknown recipe 'nope' \(known: default, mine, small, speakers, tiny, vocoder\)"
    ):
        load_recipe("nope")


@pytest.mark.parametrize(
    "files, message",
    [
        (
            {"a": 'extends = "b"', "b": 'extends = "a"'},
            r"a\.toml: 'extends' makes a cycle \(.*a\.toml → .*b\.toml → .*a\.toml\)",
        ),
        ({"a": 'extends = "a"'}, r"a\.toml: 'extends' makes a cycle"),
        ({"a": 'extends = "nobody"'}, r"a\.toml: extends unknown recipe 'nobody' \(known: .*tiny"),
        ({"a": 'extends = "gone.toml"'}, r"a\.toml: extends 'gone\.toml', which is not a file"),
        ({"a": "extends = 3"}, r"a\.toml: 'extends' must be a recipe name or file, got 3"),
        ({"a": 'extends = "b"', "b": "[model]\ncycels = 2"}, r"b\.toml: unknown setting 'model\.cycels'"),
    ],
)
def test_bad_extends_is_one_line_naming_the_file(tmp_path, files, message):
    for name, text in files.items():
        (tmp_path / f"{name}.toml").write_text(text + "\n")
    with pytest.raises(ConfigError, match=message) as caught:
        load_recipe(str(tmp_path / "a.toml"))
    assert "\n" not in str(caught.value)


def test_a_cycle_through_a_link_is_refused(tmp_path):
    (tmp_path / "a.toml").write_text('extends = "b"\n')
    (tmp_path / "b.toml").symlink_to(tmp_path / "a.toml")
    with pytest.raises(ConfigError, match="'extends' makes a cycle"):
        load_recipe(str(tmp_path / "a.toml"))


def test_the_old_names_of_renamed_settings_still_load(tmp_path):
    """data.labels and data.mels are now data.label_source and data.mel_bands; a recipe, a run's
    config.toml, a checkpoint's config of an older run and --set may still give the old names."""
    from wavegen.run_config import read_edits

    config = Config.from_dict({"data": {"labels": "folders", "mels": 80}})
    assert (config.data.label_source, config.data.mel_bands) == ("folders", 80)
    (tmp_path / "old.toml").write_text('extends = "default"\n[data]\nlabels = "folders"\nmels = 80\n')
    assert load_recipe(str(tmp_path / "old.toml")) == config
    (tmp_path / "config.toml").write_text("[data]\nmels = 40\n")
    assert read_edits(tmp_path, config).data.mel_bands == 40
    assert apply_overrides(Config(), ["data.mels=8", "data.labels=folders"]).data == DataConfig(
        label_source="folders", mel_bands=8
    )
    assert apply_overrides(Config(), ["data.mels=8", "data.mel_bands=16"]).data.mel_bands == 16  # the last --set
    with pytest.raises(ConfigError, match="--set data.mels=many: expected int"):  # the name as given
        apply_overrides(Config(), ["data.mels=many"])


def test_a_table_with_both_names_of_one_setting_is_refused(tmp_path):
    with pytest.raises(ConfigError) as refused:
        Config.from_dict({"data": {"mel_bands": 40, "mels": 80}}, source="old.toml")
    assert str(refused.value) == "old.toml: both 'data.mels' and its new name 'data.mel_bands' are set; keep one"
    (tmp_path / "both.toml").write_text('[data]\nlabels = "folders"\nlabel_source = "none"\n')
    with pytest.raises(ConfigError, match=r"both\.toml: both 'data\.labels' and its new name 'data\.label_source'"):
        load_recipe(str(tmp_path / "both.toml"))


def test_written_configs_hold_only_the_new_names():
    config = Config.from_dict({"data": {"labels": "folders", "mels": 80}})
    for data in (config.to_dict()["data"], tomllib.loads(to_toml(config))["data"]):
        assert (data["label_source"], data["mel_bands"]) == ("folders", 80)
        assert "labels" not in data and "mels" not in data
