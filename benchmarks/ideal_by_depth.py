"""FLOPs-ideal speedup of a toca_fx preset on the realistic PixArt-α-shaped model, by depth.

The benchmark cuts PixArt-α XL/2 (28 layers) to 2 layers to fit 2 CPU cores. This shows what that does to
the FLOPs-ideal speedup: the schedule's prediction from per-site FLOPs (fake tensors; one traced call per
depth runs the model eagerly once).

    python -m benchmarks.ideal_by_depth [preset] [layers ...]
"""

import sys

import torch

import toca_fx
from examples.pixart_speedup import PixArtShape, build_model
from toca_fx import ToCaConfig
from toca_fx.lowering import reset_dynamo


def ideal(preset: str, layers: int) -> float:
    shape = PixArtShape(layers=layers)
    reset_dynamo()
    toca = toca_fx.ToCa(ToCaConfig.preset(preset, num_steps=shape.steps, compiler="eager"))
    model = torch.compile(build_model(shape), backend=toca, dynamic=False)
    with torch.no_grad():
        model(
            torch.randn(2, 4, shape.latent, shape.latent),
            encoder_hidden_states=torch.randn(2, shape.text_tokens, shape.caption_channels),
            encoder_attention_mask=torch.ones(2, shape.text_tokens),
            timestep=torch.tensor([999, 999]),
            return_dict=False,
        )
    uncached, cached = toca.predicted_flops(shape.steps)
    return uncached / cached


if __name__ == "__main__":
    preset = sys.argv[1] if len(sys.argv) > 1 else "pixart-alpha"
    depths = [int(a) for a in sys.argv[2:]] or [2, 4, 8, 28]
    for layers in depths:
        print(f"{preset}, {layers} layers: FLOPs-ideal {ideal(preset, layers):.3f}x", flush=True)
