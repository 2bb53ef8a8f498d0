"""A tiny 5x7 bitmap font to burn text into frames with numpy alone (no Pillow)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .frame import Image

__all__ = ["GLYPH_HEIGHT", "GLYPH_WIDTH", "draw_text", "render_text"]

GLYPH_WIDTH = 5
GLYPH_HEIGHT = 7
GLYPH_SPACING = 1  # one blank column between characters keeps digits legible at scale 1

# Each glyph is seven rows of five columns; '#' marks a lit pixel.
_GLYPH_ROWS: dict[str, tuple[str, ...]] = {
    "0": (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": ("..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."),
    "-": (".....", ".....", ".....", "#####", ".....", ".....", "....."),
    ":": (".....", "..#..", "..#..", ".....", "..#..", "..#..", "....."),
    ".": (".....", ".....", ".....", ".....", ".....", ".##..", ".##.."),
    "/": ("....#", "....#", "...#.", "..#..", ".#...", "#....", "#...."),
    "#": (".#.#.", ".#.#.", "#####", ".#.#.", "#####", ".#.#.", ".#.#."),
    " ": (".....", ".....", ".....", ".....", ".....", ".....", "....."),
    "?": (".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."),
    "F": ("#####", "#....", "#....", "####.", "#....", "#....", "#...."),
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
    "S": (".####", "#....", "#....", ".###.", "....#", "....#", "####."),
    "T": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."),
    "U": ("#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "C": (".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."),
    "Z": ("#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"),
    "x": (".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#"),
}

_GLYPHS: dict[str, npt.NDArray[np.bool_]] = {
    char: np.array([[c == "#" for c in row] for row in rows], dtype=np.bool_)
    for char, rows in _GLYPH_ROWS.items()
}


def render_text(text: str, scale: int = 1) -> npt.NDArray[np.bool_]:
    """A boolean mask of ``text`` (unknown characters render as '?'), scaled by ``scale``."""
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    columns: list[npt.NDArray[np.bool_]] = []
    gap = np.zeros((GLYPH_HEIGHT, GLYPH_SPACING), dtype=np.bool_)
    for i, char in enumerate(text):
        if i:
            columns.append(gap)
        columns.append(_GLYPHS.get(char, _GLYPHS["?"]))
    mask = np.hstack(columns) if columns else np.zeros((GLYPH_HEIGHT, 0), dtype=np.bool_)
    return np.kron(mask, np.ones((scale, scale), dtype=np.bool_)).astype(np.bool_)


def draw_text(image: Image, text: str, x: int, y: int, scale: int = 1) -> None:
    """Burn ``text`` into ``image`` in place: white glyphs on a black box, clipped to the image."""
    if x < 0 or y < 0:
        raise ValueError(f"text origin must be inside the image, got ({x}, {y})")
    mask = render_text(text, scale)
    pad = scale
    height, width = image.shape[0], image.shape[1]
    x0, y0 = max(x - pad, 0), max(y - pad, 0)
    x1 = min(x + mask.shape[1] + pad, width)
    y1 = min(y + mask.shape[0] + pad, height)
    if x0 >= x1 or y0 >= y1:
        return
    image[y0:y1, x0:x1] = 0
    visible = mask[: max(y1 - y, 0), : max(x1 - x, 0)]
    region = image[y : y + visible.shape[0], x : x + visible.shape[1]]
    region[visible] = 255
