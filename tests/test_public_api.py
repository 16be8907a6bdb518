"""The documented public API: ``from dineuro import build_model, load_teacher``."""

import subprocess
import sys

import torch

from dineuro import build_model, load_teacher
from dineuro.models.vit2d import VisionTransformer2d


def test_readme_example(tmp_path):
    path = tmp_path / "dino.pth"
    torch.save(VisionTransformer2d(embed_dim=48, depth=4, num_heads=3).state_dict(), path)
    teacher = load_teacher(path, num_heads=3)
    model = build_model("tiny", transfer="deformable", teacher=teacher)
    assert model(torch.zeros(1, 1, 32, 32, 32)).shape == (1, 2, 32, 32, 32)
    assert model.config["transfer"] == "deformable"


def test_import_dineuro_does_not_import_torch():
    code = "import sys, dineuro, dineuro.cli; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
