"""Build script of ldmvfi_fast (pure-Python package; native extension added by csrc/)."""
from setuptools import find_packages, setup

setup(
    name="ldmvfi_fast",
    version="0.1.0",
    description="Fast, faithful inference for LDMVFI latent-diffusion video frame interpolation",
    packages=find_packages(include=["ldmvfi_fast", "ldmvfi_fast.*"]),
    python_requires=">=3.10",
    install_requires=["torch", "numpy", "einops", "av", "pyyaml", "tqdm"],
    extras_require={"export": ["onnx", "onnxruntime"], "triton": ["triton"], "test": ["pytest"]},
    entry_points={"console_scripts": ["ldmvfi-fast=ldmvfi_fast.cli:main"]},
)
