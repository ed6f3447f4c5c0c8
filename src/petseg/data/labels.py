"""Label conventions shared by training, metrics and cutouts (see METRICS.md)."""

CLASS_NAMES = ("pet", "background", "border")
PET, BACKGROUND, BORDER = range(3)

# Pixels that carry no label (letterbox padding). Loss and metrics skip them.
IGNORE_INDEX = 255

# Oxford trimaps store 1 = pet, 2 = background, 3 = border; we train on trimap - 1.
TRIMAP_OFFSET = 1
