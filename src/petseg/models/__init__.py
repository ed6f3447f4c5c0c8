"""The model zoo: U-Nets = encoder + decoder + head, one registry, safetensors model files.

    create_model(name, num_classes=3, pretrained=False, weights=None, image_size=224, **options)
    save_model(model, path) / load_model(path) / list_models()
"""

from petseg.models.config import ModelConfig
from petseg.models.files import load_model, read_config, save_model
from petseg.models.registry import create_model, list_models, model_spec

__all__ = ["ModelConfig", "create_model", "list_models", "load_model", "model_spec", "read_config", "save_model"]
