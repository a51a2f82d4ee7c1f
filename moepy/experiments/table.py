"""Table: named columns of equal length that print aligned (text and HTML) and convert to a dict of arrays."""
from __future__ import annotations

import html
import math
from typing import Dict, Mapping, Optional, Sequence

import numpy as np


class Table:
    """Columns (name -> 1-D array, all of one length), printed as an aligned table.

    formats: name -> a format spec ("{:.3f}", "{:+.1%}") for that column's numbers; numbers default to 4
    significant digits. table["col"] is the column's array; table.to_dict() a dict of arrays (what
    pandas.DataFrame(table.to_dict()) takes); table.rows() one dict per row; len(table) the row count."""

    def __init__(self, columns: Mapping[str, Sequence], formats: Optional[Mapping[str, str]] = None,
                 title: str = ""):
        self._cols: Dict[str, np.ndarray] = {k: np.asarray(v) for k, v in columns.items()}
        lengths = {len(v) for v in self._cols.values()}
        if len(lengths) > 1:
            raise ValueError(f"columns must have one length, got {sorted(lengths)}")
        self.formats = dict(formats or {})
        self.title = title

    @property
    def columns(self):
        """The column names, in order."""
        return list(self._cols)

    def __len__(self):
        return len(next(iter(self._cols.values()))) if self._cols else 0

    def __getitem__(self, name: str) -> np.ndarray:
        return self._cols[name]

    def to_dict(self) -> Dict[str, np.ndarray]:
        """{column: array} (copies)."""
        return {k: v.copy() for k, v in self._cols.items()}

    def without(self, *names: str) -> "Table":
        """This table without the columns `names` (e.g. the run-dependent "tok_s" in a stored notebook)."""
        bad = [n for n in names if n not in self._cols]
        if bad:
            raise KeyError(f"no column {bad[0]!r}; the columns are {self.columns}")
        return Table({k: v for k, v in self._cols.items() if k not in names}, self.formats, self.title)

    def rows(self):
        """One {column: value} dict per row."""
        return [{k: v[i].item() if hasattr(v[i], "item") else v[i] for k, v in self._cols.items()}
                for i in range(len(self))]

    def row(self, key, column: Optional[str] = None) -> dict:
        """The row whose first column (or `column`) equals key."""
        col = self._cols[column or self.columns[0]]
        hits = np.nonzero(col == key)[0]
        if not hits.size:
            raise KeyError(key)
        return self.rows()[int(hits[0])]

    def _cell(self, name: str, v) -> str:
        if isinstance(v, (float, np.floating)):
            if math.isnan(v):
                return "-"
            return self.formats.get(name, "{:.4g}").format(v)
        if isinstance(v, (int, np.integer)) and name in self.formats:
            return self.formats[name].format(v)
        return str(v)

    def _text_cells(self):
        return [[self._cell(k, self._cols[k][i]) for k in self._cols] for i in range(len(self))]

    def __str__(self):
        head = self.columns
        body = self._text_cells()
        widths = [max([len(h)] + [len(r[j]) for r in body]) for j, h in enumerate(head)]
        numeric = [self._cols[h].dtype.kind in "fiu" for h in head]
        fmt = lambda cells: "  ".join(c.rjust(w) if n else c.ljust(w)  # noqa: E731
                                      for c, w, n in zip(cells, widths, numeric)).rstrip()
        lines = ([self.title] if self.title else []) + [fmt(head), "  ".join("-" * w for w in widths)]
        return "\n".join(lines + [fmt(r) for r in body])

    def __repr__(self):
        return str(self)

    def _repr_html_(self):
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.columns)
        numeric = [self._cols[h].dtype.kind in "fiu" for h in self.columns]
        rows = "".join("<tr>" + "".join(f"<td style='text-align:{'right' if n else 'left'}'>{html.escape(c)}</td>"
                                        for c, n in zip(r, numeric)) + "</tr>" for r in self._text_cells())
        cap = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
