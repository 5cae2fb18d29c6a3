"""A model builder for tests: `create_model` of a ModelConfig with test-friendly defaults."""

from __future__ import annotations

from vireid.config import ModelConfig
from vireid.models import TwoStreamAGW, create_model


def model_for_tests(arch: str = "resnet18", num_classes: int = 0, **fields) -> TwoStreamAGW:
    """A TwoStreamAGW with random weights unless `pretrained`/`weights_path` say otherwise."""
    fields.setdefault("pretrained", "none")
    if "weights_path" in fields:
        fields["weights_path"] = str(fields["weights_path"])
    return create_model(ModelConfig(arch=arch, **fields), num_classes=num_classes)
