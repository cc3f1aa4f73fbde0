"""TensorFlow's start-up lines, kept out of kerasrl's output.

Importing TensorFlow and enumerating its devices prints, on a machine without a
GPU, lines such as `E0000 ... failed call to cuInit: ... UNKNOWN ERROR (303)`
straight to file descriptor 2, before `TF_CPP_MIN_LOG_LEVEL` applies. They
read like failures on a CPU-only machine. `import_tensorflow()` runs that
start-up with descriptor 2 sent to a temporary file, then writes back every
line that is not one of the known start-up notices, so real errors still show.
Set `KERASRL_TF_STARTUP_LOGS=1` to see everything.
"""

from __future__ import annotations

import os
import sys
import tempfile

# Substrings of the start-up notices that say nothing is wrong on a CPU-only machine.
STARTUP_NOTICES = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "Could not find cuda drivers on your machine",
    "failed call to cuInit",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "Attempting to register factory for plugin",
    "computation placer already registered",
    "TF-TRT Warning: Could not find TensorRT",
    "oneDNN custom operations are on",
    "This TensorFlow binary is optimized to use available CPU instructions",
    "To enable the following instructions",
)


def without_startup_notices(text: str) -> str:
    """`text` without the lines that are known start-up notices."""
    return "".join(line for line in text.splitlines(keepends=True)
                   if not any(notice in line for notice in STARTUP_NOTICES))


def import_tensorflow() -> None:
    """Imports TensorFlow and lists its devices, filtering the start-up notices."""
    if "tensorflow" in sys.modules or os.environ.get("KERASRL_TF_STARTUP_LOGS") == "1":
        import tensorflow  # noqa: F401
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable descriptor 2 (an embedded interpreter)
        import tensorflow  # noqa: F401
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices()  # the CUDA probe prints when devices are first listed
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            rest = without_startup_notices(captured.read().decode("utf-8", "replace"))
            if rest:
                sys.stderr.write(rest)
                sys.stderr.flush()
