"""Reading the files an import takes: what a file is, and its rows with their line numbers.

* :func:`check_file` refuses, with one line naming the file, what cannot be
  imported at all: a directory, 0 bytes, a name of no known kind, a file
  named ``.parquet`` that is not Parquet or is cut short.
* :class:`CsvReader` cuts a (possibly compressed) CSV file into lines itself,
  with numpy over each block, and only then lets Arrow parse the block: each
  row keeps its line number; a line with an unclosed quote is set aside
  instead of swallowing the lines after it; columns arrive as bytes, so that
  a value that is not UTF-8 costs its row (``core.import_columns``), not the
  file; a binary file is refused before its bytes could become column names.
* :class:`ParquetReader` gives a Parquet file's row batches.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

CSV_SUFFIXES = (".csv", ".tsv", ".txt")
PARQUET_SUFFIXES = (".parquet", ".pq")
COMPRESSION_SUFFIXES = (".gz", ".bz2", ".zst", ".lz4")
COMPRESSION_NAMES = {".gz": "gzip", ".bz2": "bzip2", ".zst": "zstd", ".lz4": "lz4"}


class ImportFileError(ValueError):
    """A file that cannot be imported at all; the message names the file and what to do."""


def check_file(path: Path) -> str:
    """The file's kind (``csv`` or ``parquet``) once it is known to be a non-empty regular file."""
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if path.is_dir():
        raise ImportFileError(f"{path} is a directory; expected a CSV or Parquet file")
    kind = file_kind(path)
    size = path.stat().st_size
    if size == 0:
        what = "a header line with the column names" if kind == "csv" else "a Parquet file"
        raise ImportFileError(f"{path} is empty (0 bytes); expected {what}")
    if kind == "parquet":
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(max(size - 4, 0))
            tail = f.read(4)
        if head == b"PAR1" and tail != b"PAR1":
            raise ImportFileError(
                f"{path} is a truncated Parquet file (it starts with PAR1 but its footer is missing); copy the file again"
            )
        if head != b"PAR1" or tail != b"PAR1":
            raise ImportFileError(
                f"{path} is not a Parquet file (it does not start and end with the Parquet magic bytes PAR1)"
            )
    return kind


def file_kind(path: Path) -> str:
    """``csv`` or ``parquet`` from the file name; ``ValueError`` otherwise."""
    name = path.name.lower()
    for suffix in COMPRESSION_SUFFIXES:
        name = name.removesuffix(suffix)
    if name.endswith(PARQUET_SUFFIXES) and name == path.name.lower():
        return "parquet"
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    raise ValueError(
        f"cannot import {path.name}: expected a CSV file ({', '.join(CSV_SUFFIXES)}, optionally "
        f"{'/'.join(COMPRESSION_SUFFIXES)}) or a Parquet file ({', '.join(PARQUET_SUFFIXES)})"
    )


@dataclass(frozen=True)
class Refused:
    """A line the reader set aside before validation (unclosed quote, wrong field count)."""

    line: int | None  # 1-based line of the file (the header is line 1); None for Parquet
    row: int  # 1-based data row (blank lines do not count)
    text: str
    code: str
    reason: str


@dataclass
class Chunk:
    """Rows of the file with, for each row, its line (CSV) and its 1-based data row."""

    batch: pa.RecordBatch
    lines: np.ndarray | None
    rows: np.ndarray


_LINE_BREAK = re.compile(rb"\r\n|\n|\r")


class CsvReader:
    """Chunks of a CSV file with every used column as bytes, and the lines refused on the way.

    The bytes are cut into lines here (numpy over each block) and only then
    parsed by Arrow, one block at a time: so each row keeps its line number,
    a line with an unclosed quote is set aside instead of swallowing the lines
    after it, and columns arrive as bytes, so that one value that is not UTF-8
    costs its row (``core.import_columns.decode_text``), not the file.
    """

    def __init__(self, path: Path, *, delimiter: str | None = None, block_size: int = 4 << 20):
        self.path = path
        self.delimiter = delimiter or ("\t" if ".tsv" in path.name.lower() else ",")
        self.block_size = block_size
        self.columns = self._header()
        self.refused: list[Refused] = []

    def _read(self, f, size: int) -> bytes:
        try:
            return f.read(size)
        except (OSError, pa.ArrowInvalid) as exc:
            suffix = next((s for s in COMPRESSION_NAMES if self.path.name.lower().endswith(s)), None)
            if suffix is None:
                raise
            raise ImportFileError(
                f"{self.path}: the compressed data ends early (a truncated or damaged {COMPRESSION_NAMES[suffix]} "
                "file); nothing was imported from it; copy the file again"
            ) from exc

    def _header(self) -> list[str]:
        with pa.input_stream(str(self.path), compression="detect") as f:
            head = self._read(f, 1 << 20)
        if not head.strip():
            raise ImportFileError(f"{self.path} holds no text; expected a header line with the column names")
        first = _LINE_BREAK.split(head, maxsplit=1)[0].removeprefix(b"\xef\xbb\xbf")
        control = re.search(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]", first)
        if control:
            byte = control.group()[0]
            what = "a NUL byte (0x00)" if byte == 0 else f"the control byte 0x{byte:02x}"
            raise ImportFileError(
                f"{self.path} is not CSV text: its first line holds {what} at offset {control.start()}; "
                "expected a header line with the column names"
            )
        try:
            text = first.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ImportFileError(
                f"{self.path} is not CSV text: its first line holds the byte 0x{first[exc.start]:02x} at offset "
                f"{exc.start}, which is not UTF-8; expected a header line with the column names"
            ) from None
        return next(csv.reader([text], delimiter=self.delimiter))

    def batches(self, used: list[str]) -> Iterator[Chunk]:
        convert_options = pcsv.ConvertOptions(
            include_columns=used,
            column_types={c: pa.binary() for c in used},
            null_values=[],
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        )
        state = {"line": 1, "row": 0, "header": True}  # the next block's first line is line["line"]
        with pa.input_stream(str(self.path), compression="detect") as f:
            carry = b""
            while True:
                data = self._read(f, self.block_size)
                buf = carry + data
                if data:
                    cut = max(buf.rfind(b"\n"), buf.rfind(b"\r", 0, len(buf) - 1))
                    if cut < 0:
                        carry = buf  # a line longer than a block: read on
                        continue
                    block, carry = buf[: cut + 1], buf[cut + 1 :]
                else:
                    block, carry = buf, b""
                    if block and block[-1:] not in (b"\n", b"\r"):
                        block += b"\n"
                if block:
                    chunk = self._parse_block(block, state, convert_options)
                    if chunk is not None:
                        yield chunk
                if not data:
                    return

    def _parse_block(self, block: bytes, state: dict, convert_options: pcsv.ConvertOptions) -> Chunk | None:
        b = np.frombuffer(block, dtype=np.uint8)
        is_nl = b == 0x0A
        if block.find(b"\r") < 0:  # the common case: \n line ends only
            ends = np.flatnonzero(is_nl)
            starts = np.empty_like(ends)
            starts[0] = 0
            starts[1:] = ends[:-1] + 1
            content_end = ends
        else:
            is_cr = b == 0x0D
            cr_before_nl = np.zeros(len(b), dtype=bool)
            cr_before_nl[:-1] = is_cr[:-1] & is_nl[1:]
            ends = np.flatnonzero(is_nl | (is_cr & ~cr_before_nl))  # one terminator per line; \r\n counts once
            starts = np.empty_like(ends)
            starts[0] = 0
            starts[1:] = ends[:-1] + 1
            content_end = ends - (is_nl[ends] & (ends > starts) & is_cr[np.maximum(ends - 1, 0)])
        n_lines = len(ends)
        line_no = state["line"] + np.arange(n_lines, dtype=np.int64)
        state["line"] += n_lines
        data = content_end > starts  # blank lines are not rows (as Arrow reads them)
        if state["header"]:
            data[0] = False
            state["header"] = False
        unclosed = np.zeros(n_lines, dtype=bool)
        n_quotes = np.zeros(n_lines, dtype=np.int64)
        if block.find(b'"') >= 0:
            # An unclosed quote: an odd number of double quotes on a line where a field opens with one
            # (a quote inside an unquoted field is a literal, as Arrow reads it). Counted from the
            # quotes' positions, so a block without quotes costs nothing here.
            qpos = np.flatnonzero(b == 0x22)
            prev = b[np.maximum(qpos - 1, 0)]
            opens = qpos[(qpos == 0) | (prev == ord(self.delimiter)) | (prev == 0x0A) | (prev == 0x0D)]
            n_quotes = np.searchsorted(qpos, ends) - np.searchsorted(qpos, starts)
            n_opens = np.searchsorted(opens, ends) - np.searchsorted(opens, starts)
            unclosed = data & (n_quotes % 2 == 1) & (n_opens > 0)
        row_no = state["row"] + np.cumsum(data)  # the data row of each line (valid where data)
        state["row"] = int(row_no[-1]) if n_lines else state["row"]
        for i in np.flatnonzero(unclosed).tolist():  # rare: one per damaged line
            q = int(n_quotes[i])
            self.refused.append(
                Refused(
                    int(line_no[i]), int(row_no[i]), block[starts[i] : content_end[i]].decode("utf-8", "backslashreplace"),
                    "quote", f"line has an unclosed quote ({q} double quote{'s' if q != 1 else ''}); a value may not span lines",
                )
            )  # fmt: skip
        keep = data & ~unclosed
        if not keep.any():
            return None
        if keep.all():
            kept = block
        else:
            kept = b[np.repeat(keep, ends - starts + 1)].tobytes()
        kept_lines, kept_rows = line_no[keep], row_no[keep]
        invalid: list[int] = []
        expected = len(self.columns)

        def on_invalid(row: pcsv.InvalidRow) -> str:
            k = row.number - 1  # Arrow counts the non-blank lines it was given, from 1
            invalid.append(k)
            self.refused.append(
                Refused(
                    int(kept_lines[k]), int(kept_rows[k]), row.text, "field_count",
                    f"row has {row.actual_columns} fields; expected {expected} like the header",
                )
            )  # fmt: skip
            return "skip"

        table = pcsv.read_csv(
            pa.py_buffer(kept),
            read_options=pcsv.ReadOptions(
                column_names=self.columns, use_threads=False, block_size=len(kept) + 1
            ),
            parse_options=pcsv.ParseOptions(delimiter=self.delimiter, invalid_row_handler=on_invalid),
            convert_options=convert_options,
        )
        if invalid:
            good = np.ones(len(kept_lines), dtype=bool)
            good[invalid] = False
            kept_lines, kept_rows = kept_lines[good], kept_rows[good]
        if table.num_rows != len(kept_lines):  # pragma: no cover - the framing above and Arrow's must agree
            raise ImportFileError(
                f"{self.path}: lines {int(kept_lines[0])}-{int(kept_lines[-1])} read as {table.num_rows} rows, "
                f"not {len(kept_lines)}; please report this file"
            )
        if table.num_rows == 0:
            return None
        return Chunk(table.combine_chunks().to_batches()[0], kept_lines, kept_rows)


class ParquetReader:
    """Batches of a Parquet file, with each row's 1-based position."""

    def __init__(self, path: Path, *, batch_rows: int = 262_144):
        self.path = path
        self.file = pq.ParquetFile(path)
        self.columns = self.file.schema_arrow.names
        self.batch_rows = batch_rows
        self.refused: list[Refused] = []

    def batches(self, used: list[str]) -> Iterator[Chunk]:
        done = 0
        for batch in self.file.iter_batches(batch_size=self.batch_rows, columns=used):
            yield Chunk(batch, None, done + 1 + np.arange(batch.num_rows, dtype=np.int64))
            done += batch.num_rows


def open_reader(
    path: Path, kind: str, *, delimiter: str | None, block_size: int, batch_rows: int
) -> CsvReader | ParquetReader:
    if kind == "csv":
        return CsvReader(path, delimiter=delimiter, block_size=block_size)
    return ParquetReader(path, batch_rows=batch_rows)
