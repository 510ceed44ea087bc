"""CSV files: one row per image, a square number of pixel columns (0..255 or 0..1), perhaps a label.

The label is the column named label / y / class (any case); failing that, the first column when the
rest are a square number of pixels and all columns are not. A first row with text anywhere but its
first cell, or whose first cell is a label name, is a header. The first line is read alone to count
the columns before pandas parses anything, and errors give row and column numbers, never a cell."""

from __future__ import annotations

import csv
import os
from typing import BinaryIO

import numpy as np

import vae_core.data.limits as limits

from ..errors import DataError
from .dataset import ImageDataset, Options, encode_labels, finish, square_side

LABEL_COLUMN_NAMES = ("label", "y", "class")


def load_csv(handle: BinaryIO, name: str, options: Options) -> ImageDataset:
    size = os.fstat(handle.fileno()).st_size
    if size > limits.MAX_CSV_BYTES:
        raise DataError(
            f"{name}: is {size:,} bytes, more than the limit of {limits.MAX_CSV_BYTES:,} bytes for a "
            f"CSV file (save large datasets as .npz)"
        )
    has_header = _is_header(_first_row(handle, name))
    handle.seek(0)
    import pandas as pd  # only once the file has passed the cheap checks

    try:
        table = pd.read_csv(handle, header=0 if has_header else None, skipinitialspace=True)
    except pd.errors.ParserError as error:  # pandas names lines and field counts, not cells
        raise DataError(f"{name}: is not a readable CSV file: {error}") from None
    except UnicodeDecodeError as error:
        raise DataError(f"{name}: is not a readable CSV file: byte {error.start:,} is not UTF-8 text") from None
    except (pd.errors.EmptyDataError, ValueError):
        raise DataError(f"{name}: is not a readable CSV file") from None
    if table.empty:
        raise DataError(f"{name}: has no data rows")
    first_line = 2 if has_header else 1
    label_column = _label_column(list(table.columns), has_header)
    pixel_columns = [column for column in table.columns if column != label_column]
    side = square_side(len(pixel_columns))
    if side is None:
        raise DataError(
            f"{name}: has {len(pixel_columns)} pixel columns; one image needs a square number of them, "
            f"such as 784 = 28 x 28 (a label column named label, y or class is set aside)"
        )
    _check_numbers(table, pixel_columns, name, first_line)
    pixels = table[pixel_columns].to_numpy(dtype=np.float64).reshape(len(table), 1, side, side)
    labels, class_names = None, None
    if label_column is not None:
        raw_labels = table[label_column]
        if raw_labels.isna().any():
            row = int(np.argmax(raw_labels.isna().to_numpy()))
            raise DataError(f"{name}: row {row + 1} (line {row + first_line}) has an empty label")
        labels, class_names = encode_labels(raw_labels.to_numpy(), name)
    source = f"{len(pixels):,} images from {name}" + (f" in {len(class_names)} classes" if class_names else "")
    return finish(name, pixels, labels, class_names, source=source, options=options)


def _first_row(handle: BinaryIO, name: str) -> list[str]:
    """The cells of line 1, read with bounded memory; refuses a line or a column count past the limits."""
    line = handle.readline(limits.MAX_CSV_LINE_BYTES + 1)
    if len(line) > limits.MAX_CSV_LINE_BYTES:
        raise DataError(
            f"{name}: line 1 is longer than {limits.MAX_CSV_LINE_BYTES:,} bytes, the limit for one row of pixels"
        )
    try:
        row = next(csv.reader([line.decode("utf-8", errors="replace")]), None)
    except csv.Error:  # a cell longer than the csv module's field limit (128 KiB by default)
        raise DataError(
            f"{name}: line 1 has a cell longer than {csv.field_size_limit():,} characters, the limit for one cell"
        ) from None
    if not row:
        raise DataError(f"{name}: is empty")
    if len(row) > limits.MAX_CSV_COLUMNS:
        raise DataError(
            f"{name}: has {len(row):,} columns, more than the limit of {limits.MAX_CSV_COLUMNS:,} "
            f"(one row is one image: its pixels and a label)"
        )
    return row


def _is_header(first_row: list[str]) -> bool:
    """A first row is a header when a cell other than the first is text, or the first cell names a label."""
    return first_row[0].strip().lower() in LABEL_COLUMN_NAMES or not all(_is_number(cell) for cell in first_row[1:])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _label_column(columns: list, has_header: bool):
    """The column named label / y / class; else the first one when only the rest make a square image."""
    if has_header:
        for column in columns:
            if str(column).strip().lower() in LABEL_COLUMN_NAMES:
                return column
    if square_side(len(columns) - 1) is not None and square_side(len(columns)) is None:
        return columns[0]
    return None


def _check_numbers(table, columns: list, name: str, first_line: int) -> None:
    """Raise DataError at the first cell, in reading order, that is empty or not a number, by position only."""
    import pandas as pd

    cells = table[columns]
    bad = cells.isna().to_numpy()
    text = [index for index, dtype in enumerate(cells.dtypes) if not pd.api.types.is_numeric_dtype(dtype)]
    if text:  # one to_numeric over all text cells: a loop over columns took minutes on wide files
        as_text = cells.iloc[:, text].to_numpy(dtype=object)
        not_numbers = pd.to_numeric(pd.Series(as_text.ravel()), errors="coerce").isna().to_numpy()
        bad[:, text] |= not_numbers.reshape(as_text.shape)
    if not bad.any():
        return
    row, column = np.unravel_index(int(np.argmax(bad)), bad.shape)
    problem = "is empty" if pd.isna(cells.iat[row, column]) else "is not a number"
    position = table.columns.get_loc(columns[column]) + 1
    raise DataError(f"{name}: row {row + 1} (line {row + first_line}), column {position} {problem}")
