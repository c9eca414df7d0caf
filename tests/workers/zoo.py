"""The small zoo the worker tests evaluate: architectures and data overrides."""

from __future__ import annotations

MODELS = {
    "seeded-efficientnet": ("test_efficientnet", []),
    "seeded-resnet": ("test_resnet", []),
    "seeded-vit": (
        "test_vit",
        [
            "--input-size",
            "96",
            "--crop-pct",
            "0.8",
            "--interpolation",
            "bilinear",
            "--mean",
            "0.4,0.4,0.4",
            "--std",
            "0.3,0.2,0.25",
        ],
    ),
}
OVERRIDES = {
    "seeded-vit": {
        "input_size": (3, 96, 96),
        "crop_pct": 0.8,
        "interpolation": "bilinear",
        "mean": (0.4, 0.4, 0.4),
        "std": (0.3, 0.2, 0.25),
    }
}
