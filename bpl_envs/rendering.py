"""RGB images of a sequence task (``render_mode="rgb_array"``), drawn with numpy alone.

One image shows one sequence as three heat maps with time running left to right, one column per
token, under a timeline strip::

    timeline      grey: unscored step, dark grey: scored step, red: the token to answer next
    inputs        x_t, one row per input channel, scaled by the observation bounds
    targets       y_t, one row per output channel (faded on unscored steps)
    predictions   the learner's predictions, on the targets' scale: sigmoid of the logits for
                  "bce", softmax over the channels for "ce", the values for "mse";
                  light grey where no prediction has been received yet

Values in [0, 1] use a white-to-navy scale; "mse" targets and predictions use a red-white-blue
scale symmetric about 0 (red negative), its range the largest absolute target or prediction.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SequenceImage", "sequence_image"]

WHITE = np.array([255.0, 255.0, 255.0])
NAVY = np.array([8.0, 48.0, 107.0])
RED = np.array([178.0, 24.0, 43.0])
BLUE = np.array([33.0, 102.0, 172.0])
MISSING = np.array([225.0, 225.0, 225.0])
UNSCORED_STEP = np.array([200.0, 200.0, 200.0])
SCORED_STEP = np.array([90.0, 90.0, 90.0])
NEXT_TOKEN = np.array([220.0, 40.0, 40.0])
UNSCORED_FADE = 0.6  # share of white blended into the targets of unscored steps
TIMELINE_HEIGHT = 4
GAP = 2
TARGET_WIDTH = 480  # the image aims at about this many pixels across
TARGET_HEIGHT = 240  # and this many down


class SequenceImage:
    """Pixel geometry of one sequence image: cell sizes and the rows where each panel starts.

    Args:
        sequence_length: T, the number of columns.
        input_size, output_size: rows of the input panel and of each output panel.
    """

    def __init__(self, sequence_length: int, input_size: int, output_size: int):
        rows = input_size + 2 * output_size
        self.cell_width = int(np.clip(TARGET_WIDTH // sequence_length, 1, 16))
        self.cell_height = int(np.clip(TARGET_HEIGHT // rows, 2, 16))
        self.inputs_top = TIMELINE_HEIGHT + GAP
        self.targets_top = self.inputs_top + input_size * self.cell_height + GAP
        self.predictions_top = self.targets_top + output_size * self.cell_height + GAP
        self.height = self.predictions_top + output_size * self.cell_height
        self.width = sequence_length * self.cell_width


def _sequential(values: np.ndarray) -> np.ndarray:
    """``(..., )`` values in [0, 1] -> ``(..., 3)`` colours from white to navy."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    return WHITE + v * (NAVY - WHITE)


def _diverging(values: np.ndarray, scale: float) -> np.ndarray:
    """``(..., )`` values -> ``(..., 3)`` colours: red below 0, white at 0, blue above."""
    v = np.clip(values / scale, -1.0, 1.0)[..., None]
    return np.where(v < 0, WHITE + (-v) * (RED - WHITE), WHITE + v * (BLUE - WHITE))


def _on_target_scale(predictions: np.ndarray, loss: str) -> np.ndarray:
    """``(T, n_out)`` predictions as probabilities ("bce", "ce") or values ("mse")."""
    if loss == "bce":
        return 0.5 * (1.0 + np.tanh(predictions / 2))  # the sigmoid, without overflow
    if loss == "ce":
        shifted = np.exp(predictions - predictions.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)
    return predictions


def _cells(colours: np.ndarray, geometry: SequenceImage) -> np.ndarray:
    """``(T, rows, 3)`` colours, one per (step, channel) -> ``(rows * ch, T * cw, 3)`` pixels."""
    panel = colours.transpose(1, 0, 2)
    return panel.repeat(geometry.cell_height, axis=0).repeat(geometry.cell_width, axis=1)


def sequence_image(
    inputs: np.ndarray,
    targets: np.ndarray,
    scored: np.ndarray,
    predictions: np.ndarray | None,
    t: int,
    loss: str,
    input_low: np.ndarray,
    input_high: np.ndarray,
) -> np.ndarray:
    """Draw one sequence (see the module docstring for the layout).

    Args:
        inputs: ``(T, input_size)`` tokens.
        targets: ``(T, output_size)`` targets.
        scored: bool ``(T,)``, which steps carry a loss.
        predictions: float ``(T, output_size)`` received so far (NaN where not yet), or None.
        t: number of tokens answered; column t (if t < T) is marked as the next token.
        loss: ``"bce"``, ``"ce"`` or ``"mse"``: how predictions and targets are coloured.
        input_low, input_high: ``(input_size,)`` finite observation bounds.

    Returns:
        uint8 ``(H, W, 3)`` with W = T * cell width and H as :class:`SequenceImage` lays out.
    """
    length, input_size = inputs.shape
    output_size = targets.shape[1]
    geometry = SequenceImage(length, input_size, output_size)
    image = np.full((geometry.height, geometry.width, 3), 255.0)

    timeline = np.where(scored[:, None], SCORED_STEP, UNSCORED_STEP)
    if t < length:
        timeline[t] = NEXT_TOKEN
    image[:TIMELINE_HEIGHT] = timeline.repeat(geometry.cell_width, axis=0)

    span = np.where(input_high > input_low, input_high - input_low, 1.0)
    input_colours = _sequential((inputs - input_low) / span)
    top = geometry.inputs_top
    image[top : top + input_size * geometry.cell_height] = _cells(input_colours, geometry)

    received = np.full(targets.shape, np.nan) if predictions is None else predictions
    shown = np.where(np.isnan(received), 0.0, received)
    shown = _on_target_scale(shown, loss)
    if loss == "mse":
        scale = max(float(np.abs(targets).max()), float(np.abs(shown).max()), 1e-12)
        target_colours, prediction_colours = _diverging(targets, scale), _diverging(shown, scale)
    else:
        target_colours, prediction_colours = _sequential(targets), _sequential(shown)
    fade = np.where(scored, 0.0, UNSCORED_FADE)[:, None, None]
    target_colours = (1.0 - fade) * target_colours + fade * WHITE
    prediction_colours[np.isnan(received)] = MISSING
    height = output_size * geometry.cell_height
    top = geometry.targets_top
    image[top : top + height] = _cells(target_colours, geometry)
    top = geometry.predictions_top
    image[top : top + height] = _cells(prediction_colours, geometry)
    return np.round(image).astype(np.uint8)
