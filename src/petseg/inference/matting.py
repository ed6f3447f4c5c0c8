"""Matted alpha: the network's trimap decides, closed-form matting solves only its unknown band.

The network predicts pet, background and the border band between them at about 256
pixels. Where it is confident, the answer is final: alpha 1 on the pet, 0 on the
background (no haze). Where it is not (its border class, low-confidence pixels, and a
little around them), alpha is solved from the photo's own colours with Levin, Lischinski
and Weiss's closed-form matting (2008): in every 3x3 window alpha is an affine function
of the colour, which snaps the edge to the photo's edges and keeps fur strands.

The matting Laplacian is built only for the windows that touch the band, in numpy, and
the system is solved for the band's pixels alone by SciPy's conjugate gradients: an
Oxford-size photo has some thousands of unknowns, not its 190,000 pixels, and nothing
needs a JIT compiler (pymatting's `cf_laplacian` builds the same matrix for the whole
image; the tests check ours against it). A weak pull towards the network's soft alpha
keeps the system well posed where the band touches no known pixel.

Foreground colours in the band are estimated by blur fusion (foreground.py): edge pixels
get the pet's colour instead of a blend with the old background, so a cutout pasted on a
new background has no halo.

Big photos are matted at a capped working size, and their edge colours estimated at a
smaller one; the alpha is upsampled once in uint8, and the colours are computed for the
full-size photo's edge pixels only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from petseg.inference.foreground import box_mean, fuse_means, fusion_means_at

# The pet/background decision: the network's soft alpha, P(pet) + P(border) / 2, at 0.5.
THRESHOLD = 0.5
# Matting solves a band this many model pixels to each side of that decision's edge (at
# least one photo pixel): where the network's edge falls between two of its pixels. On the
# sample's held-out test list a half-pixel band scored as well as or better than one and two
# pixels on all four alpha figures, at half the time of one pixel.
BAND_MODEL_PIXELS = 0.5
# Matting runs at most at this many pixels (about 1400 x 1050).
WORK_PIXELS = 1_500_000
# Edge colours are estimated at most at this many pixels (about 820 x 610): they vary
# smoothly, and blur fusion's cost grows faster than the photo (its windows widen with it).
FOREGROUND_PIXELS = 500_000
# Closed-form matting's colour-line regulariser (Levin et al. use 1e-7; a larger value
# gives smoother alpha in noisy or flat windows).
EPSILON = 1e-5
# Weight of the pull towards the network's decision, against the Laplacian's O(1) entries:
# keeps the system well posed where a window sees no known pixel.
PRIOR_WEIGHT = 1e-3
# Conjugate-gradient iterations from the network's decision: the band is a few pixels
# wide, so a few dozen steps carry the known edges across it.
ITERATIONS = 40
# Alpha this close to 0 or 1 is snapped there: solver residue, not transparency.
SNAP = 0.02


@dataclass
class Matte:
    """alpha (H, W) uint8 and foreground (H, W, 3) uint8: the photo with its edge colours decontaminated."""

    alpha: np.ndarray
    foreground: np.ndarray


def resize_float(channel: np.ndarray, height: int, width: int) -> np.ndarray:
    image = Image.fromarray(np.ascontiguousarray(channel, dtype=np.float32), mode="F")
    return np.asarray(image.resize((width, height), Image.BILINEAR))


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within a (2r+1) square of a True pixel."""
    return box_mean(mask, radius) > 1e-4 if radius > 0 else mask


def edge_band(inside: np.ndarray, radius: int) -> np.ndarray:
    """Pixels within a (2r+1) square of both an inside and an outside pixel."""
    share = box_mean(inside, radius)
    return (share > 1e-4) & (share < 1 - 1e-4)


def inverse_symmetric_3x3(matrices: np.ndarray) -> np.ndarray:
    """Inverses of (N, 3, 3) symmetric positive definite matrices, by their cofactors.

    Several times faster than np.linalg.inv on many small matrices, and exact for these
    (well conditioned: the covariances carry the epsilon / 9 regulariser).
    """
    a, b, c, d, e, f = (matrices[:, row, column] for row, column in ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)))
    # The adjugate's entries (it is symmetric too), named by their place in the matrix.
    aa, ab, ac = d * f - e * e, c * e - b * f, b * e - c * d
    bb, bc, cc = a * f - c * c, b * c - a * e, a * d - b * b
    determinant = a * aa + b * ab + c * ac
    adjugate = np.stack([aa, ab, ac, ab, bb, bc, ac, bc, cc], axis=-1).reshape(-1, 3, 3)
    return adjugate / determinant[:, None, None]


def closed_form_system(image: np.ndarray, unknown: np.ndarray, epsilon: float):
    """Levin et al.'s matting Laplacian, only the rows of unknown pixels.

    image (h, w, 3) float64 in 0..1; unknown (h, w) bool. Returns (rows, columns,
    values) in flat pixel indices, for every 3x3 window that contains an unknown pixel
    and lies inside the image, rows restricted to unknown pixels.
    """
    height, width = unknown.shape
    inside = np.zeros_like(unknown)
    inside[1:-1, 1:-1] = dilate(unknown, 1)[1:-1, 1:-1]
    centers = np.flatnonzero(inside)
    offsets = (np.arange(-1, 2)[:, None] * width + np.arange(-1, 2)[None, :]).ravel()
    pixels = centers[:, None] + offsets[None, :]  # (N, 9)
    colors = image.reshape(-1, 3)[pixels]  # (N, 9, 3)
    centered = colors - colors.mean(axis=1, keepdims=True)
    covariance = centered.transpose(0, 2, 1) @ centered / 9 + (epsilon / 9) * np.eye(3)
    window, position = np.nonzero(unknown.ravel()[pixels])  # the windows' unknown pixels: their rows
    # Each row's affinities to its window's 9 pixels, (1 + c_i^T S^-1 c_j) / 9, computed for
    # these rows only (a quarter of the windows' 81 entries).
    projected = centered[window, position][:, None, :] @ inverse_symmetric_3x3(covariance)[window]  # (rows, 1, 3)
    affinity = (1 + (projected @ centered[window].transpose(0, 2, 1))[:, 0]) / 9  # (rows, 9)
    values = (position[:, None] == np.arange(9)) - affinity
    return np.repeat(pixels[window, position], 9), pixels[window].ravel(), values.ravel()


def solve_band(image: np.ndarray, known_alpha: np.ndarray, unknown: np.ndarray, *, epsilon: float = EPSILON,
               prior_weight: float = PRIOR_WEIGHT, iterations: int = ITERATIONS) -> np.ndarray:
    """Alpha (h, w) float64: known_alpha outside `unknown`, closed-form matting inside.

    Minimises a^T L a + prior_weight |a - known_alpha|^2 over the unknown pixels, the
    others fixed: (L_uu + w I) a_u = -L_uk a_k + w known_alpha_u, by conjugate gradients
    (Jacobi-preconditioned) started from known_alpha, which holds the network's decision.
    """
    from scipy.sparse import coo_matrix, diags
    from scipy.sparse.linalg import cg

    alpha = known_alpha.astype(np.float64).ravel()  # a copy: astype to float64 from the caller's array
    flat_unknown = unknown.ravel()
    count = int(flat_unknown.sum())
    if count == 0 or min(unknown.shape) < 3:  # nothing to solve, or no 3x3 window fits
        return alpha.reshape(unknown.shape)
    rows, columns, values = closed_form_system(image, unknown, epsilon)
    compact = np.full(alpha.size, -1, np.int64)
    compact[flat_unknown] = np.arange(count)
    to_unknown = flat_unknown[columns]
    matrix = coo_matrix(
        (values[to_unknown], (compact[rows[to_unknown]], compact[columns[to_unknown]])), shape=(count, count)
    ).tocsr()
    matrix = matrix + diags(np.full(count, prior_weight))
    known = ~to_unknown
    start = alpha[flat_unknown]
    right = prior_weight * start - np.bincount(
        compact[rows[known]], weights=values[known] * alpha[columns[known]], minlength=count
    )
    preconditioner = diags(1.0 / matrix.diagonal())
    solution, _ = cg(matrix, right, x0=start, M=preconditioner, maxiter=iterations, rtol=1e-6)
    alpha[flat_unknown] = solution
    return np.clip(alpha, 0.0, 1.0).reshape(unknown.shape)


def work_size(height: int, width: int, work_pixels: int) -> tuple[int, int, float]:
    scale = min(1.0, (work_pixels / (height * width)) ** 0.5)
    return max(1, round(height * scale)), max(1, round(width * scale)), scale


def matte(soft_alpha: np.ndarray, photo: np.ndarray, *, threshold: float = THRESHOLD,
          band: float = BAND_MODEL_PIXELS, epsilon: float = EPSILON, prior_weight: float = PRIOR_WEIGHT,
          iterations: int = ITERATIONS, work_pixels: int = WORK_PIXELS, foreground: bool = True) -> Matte:
    """Full-resolution alpha and decontaminated colours for one photo.

    soft_alpha (h, w): the network's P(pet) + P(border) / 2 over the photo, at model size;
    photo (H, W, 3) uint8. Pixels on either side of `threshold` are pet (1) or background
    (0); a band of `band` model pixels each side of that edge is matted against the photo.
    foreground=False skips the colour estimation (alpha only; `foreground` is the photo).
    """
    height, width = photo.shape[:2]
    work_height, work_width, scale = work_size(height, width, work_pixels)
    work_photo = photo
    if scale < 1.0:
        work_photo = np.asarray(Image.fromarray(photo).resize((work_width, work_height), Image.BILINEAR))
    inside = resize_float(soft_alpha, work_height, work_width) >= threshold
    radius = max(1, round(band * work_height / soft_alpha.shape[0]))
    image = work_photo / 255.0
    alpha = solve_band(image, inside, edge_band(inside, radius), epsilon=epsilon, prior_weight=prior_weight,
                       iterations=iterations)
    alpha[alpha < SNAP] = 0.0
    alpha[alpha > 1.0 - SNAP] = 1.0

    alpha_bytes = (alpha * 255.0 + 0.5).astype(np.uint8)
    if scale < 1.0:
        alpha_bytes = np.asarray(Image.fromarray(alpha_bytes, mode="L").resize((width, height), Image.BILINEAR))
    if not foreground:
        return Matte(alpha_bytes, photo)
    colour_height, colour_width, colour_scale = work_size(work_height, work_width, FOREGROUND_PIXELS)
    if colour_scale < 1.0:
        size = (colour_width, colour_height)
        image = np.asarray(Image.fromarray(work_photo).resize(size, Image.BILINEAR)) / 255.0
        alpha = np.clip(resize_float(alpha, colour_height, colour_width), 0.0, 1.0)
    return Matte(alpha_bytes, decontaminate(photo, image, alpha, alpha_bytes))


def decontaminate(photo: np.ndarray, image: np.ndarray, alpha: np.ndarray, full_alpha: np.ndarray) -> np.ndarray:
    """The photo with its partly transparent pixels recoloured to the estimated foreground.

    Blur fusion's smooth means come from the working size (image, alpha), the nearest
    working pixel for each; the last step uses the full-size pixel's own colour and
    alpha, so a big photo keeps its own detail.
    """
    edge = (full_alpha > 0) & (full_alpha < 255)
    if not edge.any():
        return photo
    rows, columns = np.nonzero(edge)
    work_height, work_width = alpha.shape
    work_rows = np.minimum((rows * work_height) // photo.shape[0], work_height - 1)
    work_columns = np.minimum((columns * work_width) // photo.shape[1], work_width - 1)
    wanted = np.zeros(alpha.shape, bool)
    wanted[work_rows, work_columns] = True
    means = fusion_means_at(image, alpha, wanted)  # wanted pixels in row-major order
    order = np.zeros(alpha.shape, np.intp)  # a wanted working pixel's row in `means`
    order[wanted] = np.arange(len(means))
    pixels = photo[rows, columns] / np.float32(255.0)
    foreground = fuse_means(pixels, (full_alpha[rows, columns] / np.float32(255.0))[:, None],
                            means[order[work_rows, work_columns]])[0]
    result = photo.copy()
    result[rows, columns] = (foreground * 255.0 + 0.5).astype(np.uint8)
    return result
