"""The light install (`pip install petseg`): cutouts, the web service and the Python API
on ONNX Runtime with PyTorch absent; commands of the training install say so in one line.

Each check runs in a fresh interpreter where importing torch (or another [train]
module) fails as it does when the package is not installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SRC = Path(__file__).resolve().parents[1] / "src"
TRAIN_ONLY = ("torch", "torchvision", "timm", "onnx", "onnxscript", "matplotlib", "tensorboard")

BLOCKER = f"""
import importlib.abc, sys

class NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {TRAIN_ONLY!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
"""


def run_without_torch(code: str, tmp_path: Path) -> dict:
    """Run `code` after the blocker; it leaves its findings in the dict `found`, returned here."""
    script = tmp_path / "check.py"
    script.write_text(BLOCKER + "found = {}\n" + code + "\nfound['torch_imported'] = 'torch' in sys.modules\n"
                      "print(json.dumps(found))\n")
    environment = {**os.environ, "PYTHONPATH": str(SRC)}
    completed = subprocess.run([sys.executable, "-c", "import json\n" + script.read_text()], env=environment,
                               capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_blocked_import_really_fails(tmp_path):
    found = run_without_torch("""
try:
    import torch
    found['imported'] = True
except ModuleNotFoundError as error:
    found['imported'], found['name'] = False, error.name
""", tmp_path)
    assert found == {"imported": False, "name": "torch", "torch_imported": False}


def test_cutout_api_and_server_run_on_onnx_runtime_without_torch(tmp_path):
    wide = np.zeros((60, 180, 3), np.uint8)  # 3:1: a light square "pet" on a dark ground
    wide[15:45, 70:110] = 220
    Image.fromarray(wide).save(tmp_path / "wide.jpg", quality=95)
    found = run_without_torch("""
import contextlib, io
import numpy as np
from PIL import Image
from petseg.inference import Segmenter, remove_background

segmenter = Segmenter.load()
found['backend'] = segmenter.backend.name
photo = np.asarray(Image.open('wide.jpg'))
found['api_shape'] = list(remove_background(photo.T.transpose(1, 2, 0).copy()).shape)  # 1:3

from petseg.cli import main
sys.argv = ['petseg', 'cutout', 'wide.jpg', '--out', 'out']
try:
    main()
except SystemExit as stop:
    found['cutout_exit'] = stop.code
found['cutout_size'] = list(Image.open('out/wide.png').size)
found['cutout_mode'] = Image.open('out/wide.png').mode

from fastapi.testclient import TestClient
from petseg.server import create_app
with TestClient(create_app()) as client:
    response = client.post('/api/cutout', files={'file': ('wide.jpg', open('wide.jpg', 'rb').read(), 'image/jpeg')})
found['server_status'] = response.status_code
found['server_size'] = list(Image.open(io.BytesIO(response.content)).size)
""", tmp_path)
    assert found["backend"] == "onnx"
    assert found["api_shape"] == [180, 60, 4]
    assert found["cutout_exit"] in (None, 0) and found["cutout_size"] == [180, 60] and found["cutout_mode"] == "RGBA"
    assert found["server_status"] == 200 and found["server_size"] == [180, 60]
    assert found["torch_imported"] is False


def test_evaluate_writes_its_metrics_without_torch_or_matplotlib(toy_data, tmp_path):
    found = run_without_torch(f"""
import contextlib, io, json
from petseg.cli import main
sys.argv = ['petseg', 'evaluate', '--data', {str(toy_data)!r}, '--out', 'eval', '--json']
errors = io.StringIO()
with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(io.StringIO()):
    try:
        main()
    except SystemExit as stop:
        found['exit'] = stop.code
found['stderr'] = errors.getvalue()
found['metrics'] = json.load(open('eval/metrics.json'))['resolutions']['original']['pixel_accuracy']
import os
found['files'] = sorted(os.listdir('eval'))
""", tmp_path)
    assert found.get("exit") in (None, 0), found["stderr"]
    assert found["files"] == ["metrics.json"]
    assert "predictions.png: drawing predictions.png needs matplotlib: pip install 'petseg[train]'" in found["stderr"]
    assert 0 <= found["metrics"] <= 1
    assert found["torch_imported"] is False


def test_training_install_commands_say_what_to_install(tmp_path):
    found = run_without_torch("""
import contextlib, io
from petseg.cli import main
from petseg.errors import PetsegError
from petseg.inference import Segmenter
from petseg.models.files import bundled_model_path

def petseg(*arguments):
    sys.argv = ['petseg', *arguments]
    errors, output = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stderr(errors), contextlib.redirect_stdout(output):
        try:
            main()
        except SystemExit as stop:
            code = stop.code
    return {'code': code, 'stderr': errors.getvalue(), 'stdout': output.getvalue()}

found['export'] = petseg('export', str(bundled_model_path()), '--onnx', 'x.onnx')
found['models'] = petseg('models', '--json')
try:
    Segmenter.load(bundled_model_path(), backend='torch')
except PetsegError as error:
    found['load_safetensors'] = str(error)
import petseg
for name, call in (('create_model', lambda: petseg.create_model('unet_diy', num_classes=3)),
                   ('load_model', lambda: petseg.load_model(bundled_model_path())),
                   ('save_model', lambda: petseg.save_model(None, 'model.safetensors'))):
    try:
        call()
    except Exception as error:  # a bare ModuleNotFoundError came out before
        found[name] = [isinstance(error, PetsegError), str(error)]
""", tmp_path)
    export = found["export"]
    assert export["code"] != 0 and export["stderr"].strip().splitlines() == [
        "error: petseg export needs PyTorch: pip install 'petseg[train]'"
    ]
    assert "Traceback" not in export["stderr"]
    models = found["models"]
    assert models["code"] in (None, 0), models["stderr"]
    rows = json.loads(models["stdout"])
    assert {row["name"] for row in rows} >= {"unet_diy", "unet_mobilenetv3"}
    # The figures ship with the package (models/figures.json): listed without PyTorch.
    assert all(isinstance(row["params"], int) and row["params"] > 0 for row in rows)
    assert found["load_safetensors"].endswith("a .safetensors model needs PyTorch: pip install 'petseg[train]'")
    for name in ("create_model", "load_model", "save_model"):  # the Python API says it as the CLI does
        assert found[name] == [True, f"{name} needs PyTorch: pip install 'petseg[train]'"]
    assert found["torch_imported"] is False
