import pytest
import torch

from initbench.core.errors import CheckpointError
from initbench.core.files import write_torch
from initbench.models.cnn import Encoder, build_classifier
from initbench.models.transfer import (
    check_meta,
    load_encoder,
    load_init,
    make_checkpoint,
    read_checkpoint,
)

ARCH = {"channels": [8, 16, 16], "dropout": [0.3, 0.4, 0.4], "hidden": 32, "head_dropout": 0.5}
META = {"in_channels": 1, "channels": [8, 16, 16], "image_size": 16}


def _checkpoint(channels=(8, 16, 16), in_channels=1, seed=1):
    torch.manual_seed(seed)
    encoder = Encoder(in_channels, list(channels), ARCH["dropout"])
    # Non-default BatchNorm statistics, so the test sees them travel too.
    for module in encoder.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_()
            module.running_var.uniform_(0.5, 2)
    meta = {**META, "channels": list(channels), "in_channels": in_channels}
    return make_checkpoint("test", encoder, meta), encoder


def test_transfer_copies_every_encoder_tensor_exactly_and_leaves_head(tmp_path):
    checkpoint, encoder = _checkpoint()
    path = tmp_path / "init.pt"
    write_torch(path, checkpoint)
    torch.manual_seed(2)
    model = build_classifier(1, 16, 3, **ARCH)
    head_before = {k: v.clone() for k, v in model.head.state_dict().items()}
    load_encoder(model, read_checkpoint(path), str(path))
    for key, tensor in encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[key], tensor), key
    for key, tensor in model.head.state_dict().items():
        assert torch.equal(tensor, head_before[key])


def test_mismatched_shape_is_refused_naming_the_param():
    checkpoint, _ = _checkpoint(channels=(8, 16, 32))
    model = build_classifier(1, 16, 3, **ARCH)
    with pytest.raises(CheckpointError, match=r"encoder\.blocks\.2\.conv\.weight.*model\.channels"):
        load_encoder(model, checkpoint, "init.pt")


def test_missing_and_unexpected_keys_are_refused():
    checkpoint, _ = _checkpoint()
    del checkpoint["encoder"]["blocks.0.bn.running_var"]
    model = build_classifier(1, 16, 3, **ARCH)
    with pytest.raises(CheckpointError, match="missing"):
        load_encoder(model, checkpoint, "init.pt")
    checkpoint, _ = _checkpoint()
    checkpoint["encoder"]["blocks.9.conv.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match="unexpected"):
        load_encoder(model, checkpoint, "init.pt")


@pytest.mark.parametrize(
    ("key", "value", "param"),
    [("channels", [8, 16, 32], "model.channels"), ("in_channels", 3, "data.channels"),
     ("image_size", 32, "data.image_size")],
)  # fmt: skip
def test_meta_mismatch_names_the_param(key, value, param):
    checkpoint, _ = _checkpoint()
    with pytest.raises(CheckpointError, match=param.replace(".", r"\.")):
        check_meta(checkpoint, {**META, key: value}, "artifacts/init/random.pt")
    check_meta(checkpoint, META, "artifacts/init/random.pt")  # the matching meta passes


def test_read_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "absent.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_checkpoint(garbage)
    other = tmp_path / "other.pt"
    write_torch(other, {"state_dict": {}})
    with pytest.raises(CheckpointError, match="not an initbench init checkpoint"):
        read_checkpoint(other)


def test_read_checkpoint_refuses_arbitrary_pickles(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("should not run",))

    path = tmp_path / "evil.pt"
    torch.save({"format": "initbench-init/1", "x": Evil()}, path)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        read_checkpoint(path)


def test_checkpoint_without_encoder_weights_is_refused(tmp_path):
    path = tmp_path / "partial.pt"
    write_torch(path, {"format": "initbench-init/1", "strategy": "random", "meta": META})
    with pytest.raises(CheckpointError, match="lacks its encoder weights"):
        read_checkpoint(path)


def test_load_init_reads_checks_and_copies(tmp_path):
    checkpoint, encoder = _checkpoint()
    path = tmp_path / "init.pt"
    write_torch(path, checkpoint)
    model = build_classifier(1, 16, 3, **ARCH)
    assert load_init(model, path, META) == "test"
    assert all(
        torch.equal(model.encoder.state_dict()[k], v) for k, v in encoder.state_dict().items()
    )
    with pytest.raises(CheckpointError, match=r"data\.image_size"):
        load_init(build_classifier(1, 32, 3, **ARCH), path, {**META, "image_size": 32})
    with pytest.raises(CheckpointError, match="not found"):
        load_init(model, tmp_path / "absent.pt", META)
