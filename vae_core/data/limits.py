"""Limits on data we did not make. Each refusal names the limit it hit.

Loaders read them at call time as `limits.NAME`, so tests (or an operator) can lower them."""

MAX_UNCOMPRESSED_BYTES = 1 << 30  # most bytes one data file may hold or unpack to: file, zip total, npz array, idx
MAX_MEMBER_BYTES = 64 << 20  # one image file
MAX_IMAGE_COUNT = 200_000
MAX_FOLDER_FILES = 2 * MAX_IMAGE_COUNT  # files a folder may hold, images or not: walking / stops here
MAX_IMAGE_PIXELS = 40_000_000  # width x height of one image, read from its header; stricter than PIL's 89M
# N x C x H x W of one dataset as float32: 1 GiB, about five times Fashion-MNIST. Checked from headers
# (npz, idx, images) or the first line (csv) before the data is read.
MAX_DATASET_VALUES = 1 << 28
MAX_CLASSES = 1000
MAX_IMAGE_SIZE = 1024  # the largest image_size a caller may ask for
# Without an image_size, larger images are scaled down to this many pixels a side, keeping their shape:
# every model's first layer grows with the pixel count (an MLP's by 256 weights per pixel), so two
# 1000x1000 images made a model of gigabytes. `train --epochs 1` on two such images peaked at 1.4 GiB
# with 128 (1.1 GiB for 28x28 data), 2.9 GiB with 256. A larger image_size (up to 256) is still a choice.
MAX_NATIVE_SIDE = 128
DEFAULT_RESIZE = 28  # side length when own images differ in size and no image_size is given

MAX_CSV_BYTES = 256 << 20  # pandas holds every cell as a float64: up to 4x the file's size
MAX_CSV_COLUMNS = 256 * 256 + 1  # the pixels of an image at TrainConfig's largest image_size, and a label
MAX_CSV_LINE_BYTES = 4 << 20  # the first line is read alone to count columns before pandas parses

MAX_UPLOAD_NAME_BYTES = 120  # a saved upload's file name, well under the 255 of most file systems
