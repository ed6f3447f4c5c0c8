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
image; the tests check ours against it). Each unknown pixel's row is built at once over
its 5x5 neighbourhood, the pixels it shares a window with, so the sparse matrix needs no
sorting or summing of duplicate entries. A weak pull towards the network's soft alpha
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

from petseg.data.masks import edge_band, grow_by_one
from petseg.inference.foreground import fuse_means, fusion_means_at

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
# A pixel's own place in its 5x5 neighbourhood (row-major): every pixel it shares a 3x3 window with.
CENTRE = 12


@dataclass
class Matte:
    """alpha (H, W) uint8 and foreground (H, W, 3) uint8: the photo with its edge colours decontaminated."""

    alpha: np.ndarray
    foreground: np.ndarray


def resize_float(channel: np.ndarray, height: int, width: int) -> np.ndarray:
    image = Image.fromarray(np.ascontiguousarray(channel, dtype=np.float32), mode="F")
    return np.asarray(image.resize((width, height), Image.BILINEAR))


def square_offsets(radius: int, width: int) -> np.ndarray:
    """Flat-index offsets of a (2r+1)^2 square around a pixel, row-major."""
    steps = np.arange(-radius, radius + 1)
    return (steps[:, None] * width + steps[None, :]).ravel()


def inverse_symmetric_3x3(a, b, c, d, e, f) -> np.ndarray:
    """Inverses of symmetric positive definite matrices [[a, b, c], [b, d, e], [c, e, f]]
    (each argument an array of entries), by cofactors: their six entries in the same order.

    Many times faster than np.linalg.inv on many small matrices, and exact for these
    (well conditioned: the covariances carry the epsilon / 9 regulariser).
    """
    # The adjugate's entries (it is symmetric too), named by their place in the matrix.
    aa, ab, ac = d * f - e * e, c * e - b * f, b * e - c * d
    bb, bc, cc = a * f - c * c, b * c - a * e, a * d - b * b
    determinant = a * aa + b * ab + c * ac
    return np.stack([aa, ab, ac, bb, bc, cc]) / determinant


def window_statistics(colors: np.ndarray, centers: np.ndarray, width: int, epsilon: float):
    """Colour means (3, N) and inverse regularised covariances (6, N, as inverse_symmetric_3x3
    gives them) of the 3x3 windows around `centers`; colors is the image as (pixels, 3)."""
    # np.take, not fancy indexing: several times faster at gathering rows.
    window = np.moveaxis(np.take(colors, centers[:, None] + square_offsets(1, width), axis=0), 2, 0)  # (3, N, 9)
    means = window @ np.full(9, 1 / 9)
    centered = window - means[..., None]
    c0, c1, c2 = centered
    products = [np.einsum("ij,ij->i", first, second) / 9 for first, second in
                ((c0, c0), (c0, c1), (c0, c2), (c1, c1), (c1, c2), (c2, c2))]
    for diagonal in (0, 3, 5):
        products[diagonal] += epsilon / 9
    return means, inverse_symmetric_3x3(*products)


def neighbourhood_sums(terms: np.ndarray) -> np.ndarray:
    """(..., 3, 3, R) values per window, by the window centre's offset from a pixel -> (..., 25, R)
    sums per 5x5 neighbour over the windows that hold that neighbour too.

    A neighbour at offset (dy, dx) shares the windows whose centre is within one of it
    on both axes, so the sum is a separable 3-wide box sum of the 3x3 grid of windows.
    """
    *lead, _, _, count = terms.shape
    by_rows = np.zeros((*lead, 5, 3, count))
    for start in range(3):
        by_rows[..., start : start + 3, :, :] += terms
    shared = np.zeros((*lead, 5, 5, count))
    for start in range(3):
        shared[..., start : start + 3, :] += by_rows
    return shared.reshape(*lead, 25, count)


def band_laplacian(image: np.ndarray, unknown: np.ndarray, epsilon: float):
    """Levin et al.'s matting Laplacian, only the rows of unknown pixels.

    image (h, w, 3) float64 in 0..1; unknown (h, w) bool. Returns the unknown pixels
    (R,) and, for each, its 5x5 neighbourhood (R, 25) (flat indices, row-major, the pixel
    itself in the middle; clipped into the image where it leaves it, with value 0 there)
    and the Laplacian's entries (R, 25): the sum, over the 3x3 windows inside the image
    that hold both pixels, of delta_ij - (1 + c_i^T S^-1 c_j) / 9 (c: colours less the
    window's mean, S: its regularised covariance).
    """
    height, width = unknown.shape
    colors = image.reshape(-1, 3)
    windows = np.zeros_like(unknown)  # the centres of windows that hold an unknown pixel
    windows[1:-1, 1:-1] = grow_by_one(unknown)[1:-1, 1:-1]
    centers = np.flatnonzero(windows)
    window_index = np.full(unknown.size, -1, np.intp)
    window_index[centers] = np.arange(len(centers))
    means, inverses = window_statistics(colors, centers, width, epsilon)

    # Each unknown pixel's 9 windows, (3, 3, R) by their centre's offset from the pixel.
    pixels = np.flatnonzero(unknown)
    ys, xs = np.divmod(pixels, width)
    steps = np.arange(-1, 2)
    center_ys, center_xs = ys + steps[:, None, None], xs + steps[None, :, None]
    inside = (center_ys >= 1) & (center_ys <= height - 2) & (center_xs >= 1) & (center_xs <= width - 2)
    around = np.take(window_index, np.where(inside, pixels + square_offsets(1, width).reshape(3, 3, 1), 0))
    mean = np.take(means, around, axis=1)
    i00, i01, i02, i11, i12, i22 = np.take(inverses, around, axis=1)
    x0, x1, x2 = np.take(colors, pixels, axis=0).T[:, None, None, :] - mean
    # In window k the affinity of pixel i to pixel j is (1 + c_i^T S^-1 c_j) / 9
    # = (shift + p . colour_j) / 9 with p = S^-1 c_i, shift = 1 - p . mean: four numbers per window.
    terms = np.empty((4,) + inside.shape)
    terms[1] = x0 * i00 + x1 * i01 + x2 * i02
    terms[2] = x0 * i01 + x1 * i11 + x2 * i12
    terms[3] = x0 * i02 + x1 * i12 + x2 * i22
    terms[0] = 1 - (terms[1] * mean[0] + terms[2] * mean[1] + terms[3] * mean[2])
    terms *= inside
    shared = neighbourhood_sums(terms)
    neighbours = pixels + square_offsets(2, width)[:, None]  # (25, R)
    np.clip(neighbours, 0, unknown.size - 1, out=neighbours)
    neighbour_colors = np.take(colors, neighbours, axis=0)  # (25, R, 3)
    values = -(shared[0] + np.einsum("ckr,krc->kr", shared[1:], neighbour_colors)) / 9
    values[CENTRE] += inside.sum(axis=(0, 1))  # delta_ii, once per window
    return pixels, neighbours.T, values.T


def solve_band(image: np.ndarray, known_alpha: np.ndarray, unknown: np.ndarray, *, epsilon: float = EPSILON,
               prior_weight: float = PRIOR_WEIGHT, iterations: int = ITERATIONS) -> np.ndarray:
    """Alpha (h, w) float64: known_alpha outside `unknown`, closed-form matting inside.

    Minimises a^T L a + prior_weight |a - known_alpha|^2 over the unknown pixels, the
    others fixed: (L_uu + w I) a_u = -L_uk a_k + w known_alpha_u, by conjugate gradients
    (Jacobi-preconditioned) started from known_alpha, which holds the network's decision.
    """
    from scipy.sparse import csr_matrix, diags
    from scipy.sparse.linalg import cg

    alpha = known_alpha.astype(np.float64).ravel()  # a copy: astype to float64 from the caller's array
    count = int(unknown.sum())
    if count == 0 or min(unknown.shape) < 3:  # nothing to solve, or no 3x3 window fits
        return alpha.reshape(unknown.shape)
    pixels, neighbours, values = band_laplacian(image, unknown, epsilon)
    compact = np.full(alpha.size, -1, np.intp)  # an unknown pixel's row in the system
    compact[pixels] = np.arange(count)
    columns = np.take(compact, neighbours)
    to_unknown = columns >= 0
    start = alpha[pixels]
    right = prior_weight * start - np.where(to_unknown, 0.0, values * np.take(alpha, neighbours)).sum(axis=1)
    values[:, CENTRE] += prior_weight
    # 25 entries a row; those on known pixels (moved to the right-hand side) become zeros on the diagonal.
    rows = np.arange(count)[:, None]
    matrix = csr_matrix(
        (np.where(to_unknown, values, 0.0).ravel(), np.where(to_unknown, columns, rows).ravel(),
         np.arange(0, values.size + 1, values.shape[1])),
        shape=(count, count),
    )
    preconditioner = diags(1.0 / values[:, CENTRE])
    solution, _ = cg(matrix, right, x0=start, M=preconditioner, maxiter=iterations, rtol=1e-6)
    alpha[pixels] = solution
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
