"""The export platforms and flavours, spelled as Azure's API versions spell them, and what each needs.

``resolve`` turns a requested (platform, flavour) into a ``Target`` (matching names without regard to
case); ``missing_modules`` says which optional converters a target lacks here. The heavy converters
come with the project's ``export`` extra (``pip install -e '.[export]'``); ONNX and the Docker
package need nothing beyond the base install.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

__all__ = [
    "EXPORTER_VERSION",
    "EXPORT_EXTRA",
    "PLATFORMS",
    "TARGETS",
    "Target",
    "UnknownFlavor",
    "UnknownPlatform",
    "UnsupportedPlatform",
    "available_platforms",
    "missing_modules",
    "resolve",
]

# Bump when any package's contents change: exports made before say newerVersionAvailable.
EXPORTER_VERSION = "1"
EXPORT_EXTRA = "export"

ONNX, TENSORFLOW, COREML, OPENVINO, DOCKER, VAIDK = "ONNX", "TensorFlow", "CoreML", "OpenVino", "DockerFile", "VAIDK"
PLATFORMS = (ONNX, TENSORFLOW, COREML, OPENVINO, DOCKER, VAIDK)

_TENSORFLOW = ("tensorflow", "tf_keras", "onnx2tf", "onnx_graphsurgeon")


@dataclass(frozen=True)
class Target:
    platform: str
    flavor: str | None  # None: the platform's default
    requires: tuple[str, ...] = ()  # importable modules the conversion needs

    @property
    def key(self) -> str:
        return f"{self.platform}/{self.flavor or 'default'}"


TARGETS: tuple[Target, ...] = (
    Target(ONNX, None),
    Target(ONNX, "ONNX10"),
    Target(ONNX, "ONNX12"),
    Target(ONNX, "OnnxFloat16", ("onnxconverter_common",)),
    Target(TENSORFLOW, None, _TENSORFLOW),
    Target(TENSORFLOW, "TensorFlowNormal", _TENSORFLOW),
    Target(TENSORFLOW, "TensorFlowSavedModel", _TENSORFLOW),
    Target(TENSORFLOW, "TensorFlowLite", _TENSORFLOW),
    Target(TENSORFLOW, "TensorFlowLiteFloat16", _TENSORFLOW),
    Target(TENSORFLOW, "TensorFlowJs", (*_TENSORFLOW, "tensorflowjs", "jax")),
    Target(COREML, None, (*_TENSORFLOW, "coremltools")),
    Target(COREML, "CoreMLFloat16", (*_TENSORFLOW, "coremltools")),
    Target(OPENVINO, None, ("openvino",)),
    Target(OPENVINO, "NoPostProcess", ("openvino",)),
    Target(DOCKER, None),
    Target(DOCKER, "Linux"),
    Target(DOCKER, "ARM"),
    Target(DOCKER, "Windows"),
)


class UnknownPlatform(ValueError):
    """No such export platform."""


class UnknownFlavor(ValueError):
    """The platform has no such flavour."""


class UnsupportedPlatform(ValueError):
    """A platform Azure names that no tool here can produce."""


def resolve(platform: str, flavor: str | None) -> Target:
    """The target for a requested platform and flavour, names matched case-insensitively."""
    wanted_platform = next((name for name in PLATFORMS if name.lower() == platform.strip().lower()), None)
    if wanted_platform is None:
        raise UnknownPlatform(f"'{platform}' is not an export platform; expected one of {', '.join(PLATFORMS)}.")
    if wanted_platform == VAIDK:
        raise UnsupportedPlatform("VAIDK is Qualcomm's proprietary format; no tool for it exists here.")
    wanted_flavor = (flavor or "").strip().lower() or None
    for target in TARGETS:
        if target.platform == wanted_platform and (target.flavor or "").lower() == (wanted_flavor or ""):
            return target
    flavors = [target.flavor for target in TARGETS if target.platform == wanted_platform and target.flavor]
    raise UnknownFlavor(f"'{flavor}' is not a flavor of {wanted_platform}; expected none or one of {', '.join(flavors)}.")


def missing_modules(target: Target) -> list[str]:
    """The modules ``target`` needs that cannot be imported here (found without importing them)."""
    return [module for module in target.requires if importlib.util.find_spec(module) is None]


def available_platforms() -> list[str]:
    """Platforms whose default flavour can be produced here, in Azure's order."""
    return [platform for platform in PLATFORMS
            if platform != VAIDK and all(not missing_modules(t) for t in TARGETS if t.platform == platform and t.flavor is None)]
