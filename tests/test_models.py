"""The model zoo, parametrized over the registry: shapes, gradients, freezing, model files."""

from __future__ import annotations

import json

import pytest
import torch

from petseg.errors import PetsegError
from petseg.models import create_model, list_models, load_model, read_config, save_model
from petseg.models.summary import count_parameters, layer_table, measure_gflops

REGISTERED = ("unet_diy", "unet_efficientnet_lite0", "unet_efficientnet_lite1", "unet_efficientnet_lite2",
              "unet_mobilenetv2", "unet_mobilenetv3")
# Small variants keep the suite fast; the widths are options like any other.
SMALL_OPTIONS = {"unet_diy": {"width": 8}}


def small_model(name: str, **options) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, image_size=64, **{**SMALL_OPTIONS.get(name, {}), **options})


def test_registry_holds_the_registered_names():
    assert tuple(list_models()) == REGISTERED


@pytest.mark.parametrize("decoder", ["unet", "pix2pix"])
@pytest.mark.parametrize("name", REGISTERED)
def test_forward_backward_on_an_odd_size(name, decoder):
    # pix2pix's default 1024..128 widths are checked below; narrow ones keep this fast.
    widths = {"decoder_channels": [64, 32, 16, 8]} if decoder == "pix2pix" else {}
    model = small_model(name, decoder=decoder, **widths).train()
    images = torch.randn(2, 3, 65, 97)
    logits = model(images)
    assert logits.shape == (2, 3, 65, 97)
    assert torch.isfinite(logits).all()
    logits.logsumexp(dim=1).mean().backward()
    without_grad = [key for key, p in model.named_parameters() if p.grad is None]
    assert without_grad == []
    assert any(p.grad.abs().sum() > 0 for p in model.encoder.parameters())


@pytest.mark.parametrize("name", ["unet_mobilenetv3", "unet_diy"])
def test_output_keeps_a_large_non_multiple_of_32_size(name):
    model = small_model(name).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 250, 333)).shape == (1, 3, 250, 333)


@pytest.mark.parametrize("name", REGISTERED)
def test_frozen_encoder_gets_no_gradients_and_keeps_its_batchnorm_statistics(name):
    model = small_model(name, freeze_encoder=True).train()
    assert model.training and not model.encoder.training
    statistics_before = {k: v.clone() for k, v in model.encoder.state_dict().items() if "running" in k}
    assert statistics_before, "every encoder here has BatchNorm"

    model(torch.randn(2, 3, 64, 64)).mean().backward()

    assert all(p.grad is None and not p.requires_grad for p in model.encoder.parameters())
    assert all(p.grad is not None for p in [*model.decoder.parameters(), *model.head.parameters()])
    for key, before in statistics_before.items():
        torch.testing.assert_close(model.encoder.state_dict()[key], before, rtol=0, atol=0)
    total, trainable = count_parameters(model)
    assert trainable == total - sum(p.numel() for p in model.encoder.parameters())


@pytest.mark.parametrize("name", REGISTERED)
def test_save_then_load_gives_the_same_outputs(name, tmp_path):
    model = small_model(name)
    with torch.no_grad():  # move BatchNorm statistics off their defaults so they must travel too
        model.train()(torch.randn(2, 3, 64, 64))
    model.eval()
    images = torch.randn(1, 3, 71, 90)
    with torch.no_grad():
        expected = model(images)

    path = save_model(model, tmp_path / "model.safetensors")
    loaded = load_model(path)

    assert not loaded.training
    assert loaded.config == model.config
    with torch.no_grad():
        torch.testing.assert_close(loaded(images), expected, rtol=0, atol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"], "no temp file is left behind"


def test_model_file_rebuilds_every_option(tmp_path):
    model = small_model("unet_mobilenetv2", decoder="pix2pix", decoder_channels=[64, 32, 16, 8], freeze_encoder=True)
    model.config.labels = ("cat", "dog", "edge")
    config = read_config(save_model(model, tmp_path / "pix2pix.safetensors"))
    assert config.options == {"decoder": "pix2pix", "decoder_channels": [64, 32, 16, 8], "freeze_encoder": True}
    assert config.labels == ("cat", "dog", "edge")
    loaded = load_model(tmp_path / "pix2pix.safetensors")
    assert loaded.decoder.widths == [64, 32, 16, 8] and loaded.freeze_encoder


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(PetsegError) as error:
        create_model("unet_resnet9000")
    message = str(error.value)
    assert "unet_resnet9000" in message and "\n" not in message
    assert all(name in message for name in REGISTERED)


def test_unknown_option_and_bad_decoder_are_named():
    with pytest.raises(PetsegError, match="colour"):
        create_model("unet_diy", colour="red")
    with pytest.raises(PetsegError, match="unknown decoder 'deeplab'"):
        create_model("unet_diy", width=8, decoder="deeplab")
    with pytest.raises(PetsegError, match="decoder_channels"):
        create_model("unet_diy", width=8, decoder_channels=[8, 8])


def test_decoder_widths_follow_the_encoder_by_default():
    model = create_model("unet_mobilenetv2")
    channels = model.encoder.channels  # 16, 24, 32, 96, 320 at strides 2..32
    assert model.decoder.widths == [*channels[-2::-1], channels[0]]
    assert create_model("unet_mobilenetv2", decoder="pix2pix").decoder.widths == [1024, 512, 256, 128]


def test_diy_is_the_classic_unet_and_has_no_pretrained_weights():
    model = create_model("unet_diy", width=8)
    assert model.encoder.channels == [8, 16, 32, 64, 128]
    assert model.decoder.widths == [64, 32, 16, 8]
    with pytest.raises(PetsegError, match="from scratch"):
        create_model("unet_diy", pretrained=True)


@pytest.mark.parametrize(("name", "decoder"), [("unet_resnet18", "unet"), ("unet_convnext_atto", "pix2pix")])
def test_any_timm_features_only_backbone(name, decoder):
    # convnext starts at stride 4: the decoders must still come back to full size.
    model = create_model(name, decoder=decoder).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 65, 97)).shape == (1, 3, 65, 97)
    assert model.config.architecture == name


def test_backbone_without_features_only_is_one_clear_error(monkeypatch):
    import timm

    def no_features(*args, **kwargs):
        raise RuntimeError("features_only not implemented for Vision Transformer models.")

    monkeypatch.setattr(timm, "create_model", no_features)
    with pytest.raises(PetsegError, match="cannot be a U-Net encoder"):
        create_model("unet_vit_tiny_patch16_224")


def test_encoder_preprocessing_travels_in_the_config():
    assert create_model("unet_mobilenetv2").config.mean == pytest.approx((0.485, 0.456, 0.406))
    # The TF-trained Lite0 weights expect inputs scaled to [-1, 1].
    lite0 = create_model("unet_efficientnet_lite0").config
    assert lite0.mean == pytest.approx((0.5, 0.5, 0.5)) and lite0.std == pytest.approx((0.5, 0.5, 0.5))


def test_flop_counter_counts_a_known_convolution():
    conv = torch.nn.Conv2d(3, 8, kernel_size=3, padding=1, bias=False)
    assert measure_gflops(conv, 224) == pytest.approx(2 * 3 * 8 * 9 * 224 * 224 / 1e9, rel=1e-9)
    assert conv.training, "measuring gives the module back in its own mode"


@pytest.mark.parametrize("name", ["unet_mobilenetv2", "unet_diy"])
def test_layer_table_covers_every_parameter_once(name):
    model = small_model(name)
    rows = layer_table(model, image_size=64)
    assert rows[-1].name == "head" and rows[-1].output_shape == "1x3x64x64"
    assert sum(row.params for row in rows) == count_parameters(model)[0]


@pytest.mark.slow  # builds every model and counts its FLOPs
def test_models_json_lists_the_four_names_with_params_and_gflops():
    from typer.testing import CliRunner

    from petseg.cli import app

    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    rows = {row["name"]: row for row in listed if not row["bundled"]}
    assert tuple(sorted(rows)) == REGISTERED
    for row in rows.values():
        assert row["params"] == row["trainable_params"] > 100_000
        assert 0.1 < row["gflops_224"] < 50
        assert row["encoder"] and row["pretrained_weights"]
    # Lite0 and the MobileNets are the light models of the notebook: under 5 M parameters.
    assert rows["unet_mobilenetv2"]["params"] < rows["unet_mobilenetv3"]["params"] < 5_000_000


def test_summary_prints_the_layer_table_and_totals():
    from typer.testing import CliRunner

    from petseg.cli import app

    result = CliRunner().invoke(app, ["summary", "unet_mobilenetv2", "--image-size", "96"])
    assert result.exit_code == 0, result.output
    total = count_parameters(create_model("unet_mobilenetv2"))[0]
    assert f"Total params: {total:,}" in result.output
    assert "decoder.blocks.4" in result.output and "1x3x96x96" in result.output


@pytest.mark.slow  # a fresh interpreter, to see exactly what a user sees
def test_summary_of_an_unknown_name_is_one_error_line():
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "petseg", "summary", "unet_nope"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: unknown model 'unet_nope'")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_summary_refuses_an_input_no_petseg_model_takes():
    from typer.testing import CliRunner

    from petseg.cli import app

    result = CliRunner().invoke(app, ["summary", "unet_diy", "--image-size", "100000"])
    assert isinstance(result.exception, PetsegError)
    assert str(result.exception) == "--image-size: 32..2048 (what petseg models take), got 100000"
    for size in (8, 31):  # too small for the encoder's five halvings: a PyTorch traceback before
        result = CliRunner().invoke(app, ["summary", "unet_diy", "--image-size", str(size)])
        assert str(result.exception) == f"--image-size: 32..2048 (what petseg models take), got {size}"


def test_float16_model_files_are_half_the_size_and_load_as_float32(tmp_path):
    model = small_model("unet_diy").eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(images).softmax(1)
    full = save_model(model, tmp_path / "full.safetensors")
    half = save_model(model, tmp_path / "half.safetensors", dtype=torch.float16)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_model(half)
    assert all(parameter.dtype == torch.float32 for parameter in loaded.parameters())
    with torch.no_grad():
        # float16 keeps about 3 significant digits of each weight
        torch.testing.assert_close(loaded(images).softmax(1), expected, rtol=0, atol=1e-2)


def test_summary_reads_a_run_folder_and_names_a_missing_file(tmp_path):
    from typer.testing import CliRunner

    from petseg.cli import app
    from petseg.errors import PetsegError

    run = tmp_path / "run"
    run.mkdir()
    save_model(small_model("unet_diy"), run / "best.safetensors")
    result = CliRunner().invoke(app, ["summary", str(run), "--depth", "1"])
    assert result.exit_code == 0, result.output
    assert "unet_diy at" in result.output and "Total params" in result.output
    missing = CliRunner().invoke(app, ["summary", str(tmp_path / "gone.safetensors")])
    assert isinstance(missing.exception, PetsegError) and "not found" in str(missing.exception)


def load_bundle_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "bundle_model.py"
    spec = importlib.util.spec_from_file_location("bundle_model_script", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def training_run(folder, data):
    """A run folder as `petseg train` leaves it, as far as the bundle script reads it."""
    from petseg.run_dir import CONFIG_FILE
    from petseg.train import TrainConfig

    folder.mkdir()
    config = TrainConfig(model="unet_diy", data=str(data), out=str(folder), train_split="trainval")
    (folder / CONFIG_FILE).write_text(config.to_json())
    return folder


def test_bundle_script_reads_a_run_folder_and_keeps_an_existing_file_without_force(tmp_path, toy_data, monkeypatch,
                                                                                   capsys):
    from petseg.data.layouts import load_samples

    script = load_bundle_script()
    monkeypatch.setattr(script, "WEIGHTS_FOLDER", tmp_path / "weights")
    run = training_run(tmp_path / "run", toy_data)
    save_model(small_model("unet_diy"), run / "best.safetensors")
    script.main([str(run)])
    target = tmp_path / "weights" / script.BUNDLED_MODEL_NAME
    assert '"max_probability_difference_fp16"' in capsys.readouterr().out
    # Beside it, the photos it trained on (the run's trainval list), for evaluate's fit-check warning.
    listed = (tmp_path / "weights" / script.BUNDLED_TRAINING_LIST).read_text().splitlines()
    assert listed[0].startswith("# ") and listed[1].startswith("# ")
    assert listed[2:] == sorted(sample.name for sample in load_samples(toy_data, "trainval"))
    target.write_bytes(b"the committed model")
    with pytest.raises(SystemExit, match="--force"):
        script.main([str(run)])
    assert target.read_bytes() == b"the committed model"
    script.main([str(run), "--force"])
    assert load_model(target).config.architecture == "unet_diy"
    with pytest.raises(SystemExit, match="best.safetensors"):
        script.main([str(tmp_path / "weights"), "--force"])
    (run / "config.json").unlink()
    with pytest.raises(SystemExit, match="config.json: missing; the bundled model needs the run that trained it"):
        script.main([str(run), "--force"])


def test_bundle_script_takes_the_final_weights_with_last(tmp_path, toy_data, monkeypatch, capsys):
    """A model trained on every image has no held-out epoch to pick: --last bundles last.pt's weights."""
    import torch

    from petseg.train.checkpoint import save_checkpoint

    script = load_bundle_script()
    monkeypatch.setattr(script, "WEIGHTS_FOLDER", tmp_path / "weights")
    run = training_run(tmp_path / "run", toy_data)
    best, final = small_model("unet_diy"), small_model("unet_diy")
    with torch.no_grad():
        for parameter in final.parameters():
            parameter.add_(0.5)
    save_model(best, run / "best.safetensors")
    save_checkpoint(run / "last.pt", {"model": final.state_dict()})
    script.main([str(run), "--last"])
    bundled = load_model(tmp_path / "weights" / script.BUNDLED_MODEL_NAME)
    for name, tensor in final.state_dict().items():
        torch.testing.assert_close(bundled.state_dict()[name].float(), tensor.float(), atol=1e-2, rtol=1e-3)
    assert '"weights": "last"' in capsys.readouterr().out
    # A run that kept a moving average validated and saved that: --last bundles it, not the raw weights.
    save_checkpoint(run / "last.pt", {"model": best.state_dict(), "ema": final.state_dict()})
    script.main([str(run), "--last", "--force"])
    bundled = load_model(tmp_path / "weights" / script.BUNDLED_MODEL_NAME)
    for name, tensor in final.state_dict().items():
        torch.testing.assert_close(bundled.state_dict()[name].float(), tensor.float(), atol=1e-2, rtol=1e-3)
    save_checkpoint(run / "last.pt", {"model": small_model("unet_mobilenetv2").state_dict()})
    with pytest.raises(SystemExit, match="do not fit"):
        script.main([str(run), "--last", "--force"])


def test_mobilenetv2_pix2pix_is_the_notebooks_model():
    """The notebook's Keras U-Net: skips at block_1/3/6/13/16_expand_relu, pix2pix decoder.

    Keras counted 19,839,011 parameters, BatchNorm's moving mean and variance included;
    torch keeps those as buffers, so they are added here to compare like with like.
    """
    from petseg.models import create_model
    from petseg.train import resolve_config

    config = resolve_config("unet_mobilenetv2", "data", "out", "seed")
    model = create_model(config.model, **config.model_options)
    assert model.config.options["decoder"] == "pix2pix"
    parameters = sum(parameter.numel() for parameter in model.parameters())
    moving_statistics = sum(2 * module.num_features for module in model.modules()
                            if isinstance(module, torch.nn.BatchNorm2d))
    assert parameters + moving_statistics == pytest.approx(19_839_011, rel=0.005)
    assert parameters == pytest.approx(19_839_011, rel=0.005)
    features = model.encoder(torch.zeros(1, 3, 128, 128))
    # block_1/3/6/13/16_expand_relu at 128 px input.
    assert [tuple(f.shape[1:]) for f in features] == [(96, 64, 64), (144, 32, 32), (192, 16, 16), (576, 8, 8),
                                                      (960, 4, 4)]
    assert model(torch.zeros(1, 3, 96, 160)).shape == (1, 3, 96, 160)


def test_models_lists_the_bundled_model_with_its_own_figures_and_names_in_full(monkeypatch):
    """The bundled Lite0 has a wider decoder than the registry default: its own row says so."""
    import rich.console
    from typer.testing import CliRunner

    from petseg.cli import app
    from petseg.models.files import bundled_model_path

    bundled = load_model(bundled_model_path())
    result = CliRunner().invoke(app, ["models", "--json"])
    row = [row for row in json.loads(result.output) if row["bundled"]][0]
    assert row["params"] == count_parameters(bundled)[0]
    assert row["params"] != count_parameters(create_model(bundled.config.architecture))[0]
    # A narrow terminal: every name whole, on a line of its own.
    monkeypatch.setattr(rich.console.Console, "is_terminal", property(lambda console: True))
    result = CliRunner(env={"COLUMNS": "40"}).invoke(app, ["models"])
    lines = result.output.splitlines()
    for name in REGISTERED + (f"{bundled.config.architecture} (bundled)",):
        assert name in lines, result.output
    assert f"{count_parameters(bundled)[0]:,} params" in result.output


@pytest.mark.slow  # builds every model on the meta device
def test_the_shipped_model_figures_are_current():
    """`petseg models` reads models/figures.json; rerun scripts/update_model_figures.py when this fails."""
    from petseg.models.figures import count_figures, read_figures
    from petseg.models.files import bundled_model_path, read_config

    shipped, counted = read_figures(), count_figures(read_config(bundled_model_path()))
    assert shipped["bundled"] == counted["bundled"]
    assert shipped["registry"] == counted["registry"]
