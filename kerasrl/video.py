"""Writing rendered frames to an MP4 or GIF file (the `video` extra: imageio, imageio-ffmpeg)."""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

FORMATS = (".mp4", ".gif")


def check_path(path: str | os.PathLike) -> str:
    """The video's suffix (".mp4" or ".gif"), after checking that it can be written."""
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in FORMATS:
        raise ValueError(f"Cannot record a video to {os.fspath(path)!r}: the file must end in .mp4 or .gif.")
    try:
        import imageio.v3  # noqa: F401
        if suffix == ".mp4":
            import imageio_ffmpeg  # noqa: F401
    except ImportError as error:
        raise ImportError(f"Recording a video needs imageio and imageio-ffmpeg: pip install 'kerasrl[video]' "
                          f"({error}).") from error
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"Cannot record a video to {os.fspath(path)!r}: the folder {folder} does not exist.")
    return suffix


def write(path: str | os.PathLike, frames: Sequence[np.ndarray], fps: float) -> None:
    """Writes RGB frames (H, W, 3) of uint8 as an MP4 (H.264) or a looping GIF."""
    import imageio.v3 as iio

    suffix = check_path(path)
    if not frames:
        raise ValueError("No frames to write: the environment rendered nothing.")
    stack = np.stack([np.asarray(frame, np.uint8) for frame in frames])
    if stack.ndim != 4 or stack.shape[-1] != 3:
        raise ValueError(f"Expected RGB frames of shape (H, W, 3), got {stack.shape[1:]}.")
    if suffix == ".gif":
        iio.imwrite(path, stack, duration=1000.0 / fps, loop=0)
    else:
        # H.264 in yuv420p (what players expect) needs even sides: pad by one row or column.
        pad_h, pad_w = stack.shape[1] % 2, stack.shape[2] % 2
        if pad_h or pad_w:
            stack = np.pad(stack, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
        iio.imwrite(path, stack, plugin="FFMPEG", fps=fps, codec="libx264", macro_block_size=1)
