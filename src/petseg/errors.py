"""Errors a user can cause and fix. The CLI prints them as one line, no traceback."""


class PetsegError(Exception):
    """A user-facing error: the message names the file or option and what is wrong."""

    exit_code = 2


class ImageError(PetsegError):
    """An image that cannot be decoded, or one that breaks a limit."""


class LabelError(PetsegError):
    """A mask whose values are not valid labels."""


class NotAnImageError(ImageError):
    """Content that is not an image at all (empty, text, unknown format)."""
