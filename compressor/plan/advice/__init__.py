"""Plan advice, one module per stage config type; importing this package registers every one with ADVICE."""

from compressor.plan.advice import (  # noqa: F401
    calibrated,
    distill,
    export,
    finetune,
    int8,
    qat,
    structured,
    unstructured,
    vocabulary,
    weight_only,
)
