"""MovieLens-100K loader: counts, titles, genres, both sources agree, clear errors."""

from __future__ import annotations

import random
import zipfile
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings, strategies as st

from torchrec_side.data import fetch, movielens
from torchrec_side.data.movielens import (
    DataFormatError,
    GENRES,
    item_text,
    load_movielens,
    MovieLens100K,
    year_bucket,
    YEAR_BUCKETS,
)

_MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


# the ``wheel`` and ``ml`` fixtures (the recbole wheel, MovieLens-100K loaded from it) are in tests/data/conftest.py


def _atomic(wheel: Path, name: str) -> list[list[str]]:
    with zipfile.ZipFile(wheel) as zf:
        text = zf.read(f"{fetch.RECBOLE_ML100K_DIR}/{name}").decode("utf-8")
    return [line.split("\t") for line in text.splitlines() if line]


def _write_grouplens(wheel: Path, folder: Path) -> None:
    """Write a GroupLens-format ml-100k folder from the wheel's files, with the original's quirks.

    u.item: ``id|title (year)|dd-Mon-yyyy||url|19 flags``, latin-1; item 267 is
    ``267|unknown||||1|0|...``; item 1412's title is ``... Great Giving (1995) (V)``. u.data rows
    are shuffled (the loader sorts by time).
    """
    folder.mkdir(parents=True)
    inter = _atomic(wheel, "ml-100k.inter")[1:]
    random.Random(0).shuffle(inter)
    (folder / "u.data").write_text("".join("\t".join(r) + "\n" for r in inter), encoding="latin-1")
    lines = []
    for iid, title, year, classes in _atomic(wheel, "ml-100k.item")[1:]:
        flags = ["1" if g in classes.split() else "0" for g in GENRES]
        if iid == "267":
            lines.append("267|unknown||||" + "|".join(flags))
            continue
        if iid == "1412":
            full, date = "Land Before Time III: The Time of the Great Giving (1995) (V)", "1995"
        else:
            full, date = f"{title} ({year})", year
        day = f"{int(iid) % 28 + 1:02d}-{_MONTHS[int(iid) % 12]}-{date}"
        lines.append(f"{iid}|{full}|{day}||http://us.imdb.com/M/title-exact?x|" + "|".join(flags))
    (folder / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    users = _atomic(wheel, "ml-100k.user")[1:]
    (folder / "u.user").write_text("".join("|".join(r) + "\n" for r in users), encoding="latin-1")


@pytest.fixture(scope="module")
def grouplens_dir(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("gl") / "ml-100k"
    _write_grouplens(wheel, folder)
    return folder


# ------------------------------------------------------------------------------------ counts


def test_counts(ml: MovieLens100K) -> None:
    assert len(ml.ratings) == 100_000
    assert ml.num_users == 943 and ml.num_items == 1682
    r = ml.ratings
    for t in (r.user_id, r.item_id, r.rating, r.timestamp):
        assert t.shape == (100_000,)
    assert r.user_id.dtype == r.item_id.dtype == r.timestamp.dtype == torch.int64
    assert r.rating.dtype == torch.float32
    assert int(r.user_id.min()) == 0 and int(r.user_id.max()) == 942
    assert int(r.item_id.min()) == 0 and int(r.item_id.max()) == 1681
    assert set(r.rating.unique().tolist()) == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert bool((r.timestamp[1:] >= r.timestamp[:-1]).all()), "ratings sorted by time"
    # every ML-100K user rated at least 20 movies; (user, item) pairs are unique
    assert int(torch.bincount(r.user_id).min()) >= 20
    assert torch.unique(r.user_id * 1682 + r.item_id).numel() == 100_000
    assert ml.items.genres.shape == (1682, 19) and ml.items.genres.dtype == torch.bool
    assert ml.items.year.shape == (1682,)


def test_dense_ids_are_raw_minus_one(ml: MovieLens100K) -> None:
    assert torch.equal(ml.items.raw_id, torch.arange(1, 1683))
    assert torch.equal(ml.users.raw_id, torch.arange(1, 944))
    # the file's first rating is "196 242 3 881250949"
    r = ml.ratings
    hit = (r.user_id == 195) & (r.item_id == 241)
    assert int(hit.sum()) == 1
    assert float(r.rating[hit]) == 3.0 and int(r.timestamp[hit]) == 881250949


def test_titles_and_years(ml: MovieLens100K) -> None:
    items = ml.items
    assert len(items.title) == 1682
    assert all(isinstance(t, str) and t.strip() for t in items.title), "no missing titles"
    assert not any(t.endswith(")") and t[-5:-1].isdigit() for t in items.title), "no year left"
    assert items.title[0] == "Toy Story" and int(items.year[0]) == 1995
    assert items.title[11] == "Usual Suspects, The"
    assert items.title[10] == "Seven (Se7en)"  # inner parentheses kept
    assert items.title[542] == "Misérables, Les"  # non-ASCII decoded
    # RecBole quirks normalized: 267 "unkonwn", 1412 year "V"
    assert items.title[266] == "unknown" and int(items.year[266]) == movielens.UNKNOWN_YEAR
    assert items.title[1411] == "Land Before Time III: The Time of the Great Giving"
    assert int(items.year[1411]) == 1995
    known = items.year[items.year >= 0]
    assert known.numel() == 1681
    assert int(known.min()) == 1922 and int(known.max()) == 1998


def test_genre_flags_as_the_files_say(ml: MovieLens100K, wheel: Path) -> None:
    items = ml.items
    assert items.genre_names(0) == ["Animation", "Children's", "Comedy"]  # Toy Story
    assert items.genre_names(1) == ["Action", "Adventure", "Thriller"]  # GoldenEye
    assert items.genre_names(11) == ["Crime", "Thriller"]  # Usual Suspects
    assert items.genre_names(266) == ["unknown"]
    assert items.genre_names(1372) == ["unknown"]  # Good Morning (1971)
    counts = dict(zip(GENRES, items.genres.sum(0).tolist()))
    assert counts["Drama"] == 725 and counts["Comedy"] == 505 and counts["unknown"] == 2
    assert bool(items.genres.any(1).all()), "every movie has a genre flag"
    # every row against the raw `class` column
    for iid, _, _, classes in _atomic(wheel, "ml-100k.item")[1:]:
        assert items.genre_names(int(iid) - 1) == sorted(classes.split(), key=GENRES.index)


def test_users(ml: MovieLens100K) -> None:
    u = ml.users
    assert u.gender_vocab == ("F", "M")
    assert len(u.occupation_vocab) == 21 and list(u.occupation_vocab) == sorted(u.occupation_vocab)
    assert int(u.age[0]) == 24 and u.gender_vocab[int(u.gender[0])] == "M"
    assert u.occupation_vocab[int(u.occupation[0])] == "technician"
    assert u.zip_code[0] == "85711"
    assert int((u.gender == u.gender_vocab.index("F")).sum()) == 273
    assert 7 <= int(u.age.min()) and int(u.age.max()) <= 73


def test_item_text(ml: MovieLens100K) -> None:
    texts = item_text(ml.items)
    assert len(texts) == 1682
    assert texts[0] == "Toy Story (1995). Genres: Animation, Children's, Comedy"
    assert texts[266] == "unknown. Genres: unknown"
    assert texts[11] == "Usual Suspects, The (1995). Genres: Crime, Thriller"


def test_year_bucket_edges() -> None:
    years = torch.tensor([1922, 1959, 1960, 1969, 1970, 1980, 1989, 1990, 1994, 1995, 1998, -1])
    names = [YEAR_BUCKETS[b] for b in year_bucket(years).tolist()]
    assert names == ["<1960", "<1960", "1960s", "1960s", "1970s", "1980s", "1980s", "1990-94",
                     "1990-94", "1995+", "1995+", "unknown"]  # fmt: skip
    assert year_bucket([1995]).dtype == torch.int64


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=1800, max_value=2100), min_size=2, max_size=20))
def test_year_bucket_is_monotone(years: list[int]) -> None:
    ys = sorted(years)
    b = year_bucket(torch.tensor(ys))
    assert bool((b[1:] >= b[:-1]).all()) and int(b.max()) < len(YEAR_BUCKETS) - 1


def test_year_bucket_counts(ml: MovieLens100K) -> None:
    assert year_bucket(ml.items.year).bincount(minlength=7).tolist() == [133, 46, 55, 110, 455,
                                                                          882, 1]  # fmt: skip


# ----------------------------------------------------------------------- sources agree


def _assert_same(a: MovieLens100K, b: MovieLens100K) -> None:
    for name in ("user_id", "item_id", "rating", "timestamp"):
        assert torch.equal(getattr(a.ratings, name), getattr(b.ratings, name)), name
    assert torch.equal(a.items.raw_id, b.items.raw_id)
    assert a.items.title == b.items.title
    assert torch.equal(a.items.year, b.items.year)
    assert torch.equal(a.items.genres, b.items.genres)
    for name in ("raw_id", "age", "gender", "occupation"):
        assert torch.equal(getattr(a.users, name), getattr(b.users, name)), name
    assert a.users.zip_code == b.users.zip_code
    assert a.users.occupation_vocab == b.users.occupation_vocab
    assert a.users.gender_vocab == b.users.gender_vocab


def test_grouplens_folder_gives_same_result(ml: MovieLens100K, grouplens_dir: Path) -> None:
    gl = load_movielens(grouplens_dir)
    assert gl.source.startswith("GroupLens")
    _assert_same(ml, gl)
    _assert_same(ml, load_movielens(grouplens_dir.parent))  # parent of ml-100k works too


def test_env_var_and_recbole_folder(
    ml: MovieLens100K, wheel: Path, grouplens_dir: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv(fetch.ML100K_ENV, str(grouplens_dir))
    _assert_same(ml, load_movielens())
    folder = tmp_path / "rb"
    folder.mkdir()
    with zipfile.ZipFile(wheel) as zf:
        for name in fetch.RECBOLE_ML100K_FILES:
            (folder / Path(name).name).write_bytes(zf.read(name))
    _assert_same(ml, load_movielens(folder))


def test_year_from_release_date_when_title_has_none(wheel: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ml-100k"
    _write_grouplens(wheel, folder)
    lines = (folder / "u.item").read_bytes().decode("latin-1").splitlines()
    lines[0] = lines[0].replace("Toy Story (1995)", "Toy Story")  # date 02-Feb-1995 remains
    (folder / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    items = load_movielens(folder).items
    assert items.title[0] == "Toy Story" and int(items.year[0]) == 1995


# ------------------------------------------------------------------------------- errors


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_movielens(tmp_path / "nope")


def test_missing_file_in_grouplens_folder(wheel: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ml-100k"
    _write_grouplens(wheel, folder)
    (folder / "u.item").unlink()
    with pytest.raises(FileNotFoundError, match=r"u\.item"):
        load_movielens(folder)


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"u\.data"):
        load_movielens(tmp_path)


def test_corrupt_wheel(tmp_path: Path) -> None:
    bad = tmp_path / "recbole-1.2.1-py3-none-any.whl"
    bad.write_bytes(b"this is not a zip file")
    with pytest.raises(DataFormatError, match="not a readable wheel"):
        load_movielens(bad)


def test_zip_without_movielens(tmp_path: Path) -> None:
    z = tmp_path / "other.whl"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("something/else.txt", "hi")
    with pytest.raises(FileNotFoundError, match="ml-100k"):
        load_movielens(z)


def test_malformed_item_line(wheel: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ml-100k"
    _write_grouplens(wheel, folder)
    lines = (folder / "u.item").read_bytes().decode("latin-1").splitlines()
    lines[4] = "5|Copycat (1995)|01-Jan-1995"  # truncated line 5
    (folder / "u.item").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    with pytest.raises(DataFormatError, match=r"u\.item, line 5"):
        load_movielens(folder)


def test_bad_genre_flag_and_rating_refs(wheel: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ml-100k"
    _write_grouplens(wheel, folder)
    data = (folder / "u.data").read_text()
    (folder / "u.data").write_text(data + "1\t99999\t3\t881250949\n")
    with pytest.raises(DataFormatError, match="missing from"):
        load_movielens(folder)
    (folder / "u.data").write_text(data + "1\t2\tthree\t881250949\n")
    with pytest.raises(DataFormatError, match="u.data"):
        load_movielens(folder)


def test_recbole_header_missing_column(wheel: Path, tmp_path: Path) -> None:
    folder = tmp_path / "rb"
    folder.mkdir()
    with zipfile.ZipFile(wheel) as zf:
        for name in fetch.RECBOLE_ML100K_FILES:
            (folder / Path(name).name).write_bytes(zf.read(name))
    item = (folder / "ml-100k.item").read_text(encoding="utf-8")
    (folder / "ml-100k.item").write_text(item.replace("class:token_seq", "genre:token_seq", 1),
                                         encoding="utf-8")  # fmt: skip
    with pytest.raises(DataFormatError, match=r"lacks columns \['class'\]"):
        load_movielens(folder)
