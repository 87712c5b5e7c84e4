"""toca_fx: token-wise feature caching (ToCa) for diffusion transformers, as a torch.compile backend.

model = torch.compile(model, backend=toca_fx.toca_backend)
model = torch.compile(model, backend="toca", options={"interval": 4, "fresh_ratio": 0.1})
toca = toca_fx.enable(pipe)        # a diffusers pipeline; toca_fx.disable(pipe) undoes it
print(toca_fx.explain(model, *example_inputs))
"""

from .backend import ToCa, toca_backend
from .calibrate import Calibration, calibrate
from .config import PRESETS, ToCaConfig
from .explain import explain
from .lowering import register_backend
from .pipelines import disable, enable

register_backend(toca_backend, "toca")

__all__ = [
    "PRESETS",
    "Calibration",
    "ToCa",
    "ToCaConfig",
    "calibrate",
    "disable",
    "enable",
    "explain",
    "toca_backend",
]
