"""Networks of the method: DHLN (with SHN and FHS as its one-stream variants), FPTN with its discriminators and
the VGG-19 conv1_2 feature extractor of its perceptual loss."""

from .dhln import DHLN, DHLNOutput, FUBlock1, FUBlock2, count_parameters
from .discriminators import AppearanceDiscriminator, PatchDiscriminator, ShapeDiscriminator
from .fptn import FPTN, PATBlock, make_norm
from .vgg import VGG19Conv12

__all__ = [
    "DHLN",
    "DHLNOutput",
    "FUBlock1",
    "FUBlock2",
    "count_parameters",
    "FPTN",
    "PATBlock",
    "make_norm",
    "PatchDiscriminator",
    "AppearanceDiscriminator",
    "ShapeDiscriminator",
    "VGG19Conv12",
]
