import os

import pytest
import torch

from wavegen.config import Config, ModelConfig
from wavegen.errors import CheckpointError, WriteError
from wavegen.model import checkpoint as ckpt
from wavegen.model.network import WaveNet

SMALL = ModelConfig(cycles=1, layers_per_cycle=3, residual_channels=8, gate_channels=8, skip_channels=8)


def small_payload() -> dict:
    config = Config(model=SMALL)
    return {"config": config.to_dict(), "model": WaveNet(SMALL).state_dict(), "step": 7}


def test_round_trip_rebuilds_the_model_from_the_file_alone(tmp_path):
    payload = small_payload()
    ckpt.save(tmp_path / "c.pt", payload)
    model, loaded, config = ckpt.load_model(tmp_path / "c.pt")
    assert loaded["step"] == 7 and model.config == SMALL
    assert config.model == SMALL and config == ckpt.config_of(loaded)  # the config, parsed once
    for name, tensor in payload["model"].items():
        assert torch.equal(model.state_dict()[name], tensor)
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary files left behind
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "c.pt").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


class Exploit:
    """Unpickling this would create a marker file: loading must refuse it instead."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_checkpoint_runs_no_code(tmp_path):
    marker = tmp_path / "pwned"
    payload = small_payload()
    payload["extra"] = Exploit(marker)
    path = tmp_path / "evil.pt"
    torch.save({"format": ckpt.FORMAT, "version": ckpt.VERSION, **payload}, path)
    with pytest.raises(CheckpointError, match="refused to load"):
        ckpt.load(path)
    assert not marker.exists()


def test_corrupt_foreign_and_mismatched_files_are_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        ckpt.load(tmp_path / "missing.pt")
    ckpt.save(tmp_path / "good.pt", small_payload())
    data = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut.pt: not a wavegen checkpoint \(corrupt or truncated\)$"):
        ckpt.load(tmp_path / "cut.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a wavegen checkpoint"):
        ckpt.load(tmp_path / "foreign.pt")
    payload = small_payload()
    payload["config"]["model"]["residual_channels"] = 16  # weights no longer fit the shape
    ckpt.save(tmp_path / "mismatch.pt", payload)
    with pytest.raises(CheckpointError, match="do not fit the model shape"):
        ckpt.load_model(tmp_path / "mismatch.pt")


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "latest.pt"
    ckpt.save(path, small_payload())
    before = path.read_bytes()

    def broken_save(obj, handle):
        handle.write(b"partial")
        raise RuntimeError("crashed halfway")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(RuntimeError):
        ckpt.save(path, small_payload())
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]


@pytest.mark.parametrize("room", [0, 5000, 30_000])
def test_a_full_disk_names_the_checkpoint_and_keeps_the_previous_one(tmp_path, full_disk, room):
    """torch.save turns the ENOSPC of a write into a RuntimeError of its own ("unexpected pos"):
    the error must still say which file and what happened."""
    path = tmp_path / "latest.pt"
    ckpt.save(path, small_payload())
    before = path.read_bytes()
    assert len(before) > 30_000 >= room
    full_disk.room = room
    with pytest.raises(WriteError, match=f"^{path}: no space left on device \\(the previous file is intact\\)$"):
        ckpt.save(path, small_payload())
    assert full_disk.refused and path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]
    with pytest.raises(WriteError, match="new.pt: no space left on device \\(nothing was written\\)"):
        ckpt.save(tmp_path / "new.pt", small_payload())
    assert [p.name for p in tmp_path.iterdir()] == ["latest.pt"]


def test_a_checkpoint_from_before_the_parameterisation_settings_loads_as_it_was(tmp_path):
    """Configs written before model.init/weight_norm/scale_sums and train.code_noise/full_context
    existed meant PyTorch's initialisation, plain weights, no code noise, context windows."""
    import dataclasses

    from wavegen.config import LEGACY_MODEL, LEGACY_TRAIN

    old_shape = dataclasses.replace(SMALL, **LEGACY_MODEL)
    old = WaveNet(old_shape)
    config = Config(model=old_shape).to_dict()
    for key in LEGACY_MODEL:
        del config["model"][key]
    for key in LEGACY_TRAIN:
        del config["train"][key]
    ckpt.save(tmp_path / "old.pt", {"config": config, "model": old.state_dict(), "step": 3})
    model, _, loaded = ckpt.load_model(tmp_path / "old.pt")
    assert model.config == old_shape
    assert (loaded.train.code_noise, loaded.train.full_context) == (0.0, True)
    codes = torch.randint(0, 256, (1, 40))
    with torch.no_grad():
        assert torch.equal(model(codes), old(codes))


def test_a_checkpoint_saved_with_the_old_setting_names_loads(tmp_path):
    """Runs saved before data.labels and data.mels were renamed data.label_source and
    data.mel_bands carry the old names in their checkpoints' configs."""
    config = Config(model=SMALL).to_dict()
    del config["data"]["label_source"], config["data"]["mel_bands"]
    config["data"] |= {"labels": "folders", "mels": 16}
    weights = WaveNet(SMALL).state_dict()
    ckpt.save(tmp_path / "old.pt", {"config": config, "model": weights, "step": 3})
    model, payload, loaded = ckpt.load_model(tmp_path / "old.pt")
    assert model.config == SMALL and (loaded.data.label_source, loaded.data.mel_bands) == ("folders", 16)
    assert "mels" not in loaded.to_dict()["data"]  # what a resumed run saves again: the new names
    config["data"]["mel_bands"] = 16
    ckpt.save(tmp_path / "both.pt", {"config": config, "model": weights, "step": 3})
    with pytest.raises(CheckpointError, match="both 'data.mels' and its new name 'data.mel_bands' are set"):
        ckpt.load_model(tmp_path / "both.pt")
