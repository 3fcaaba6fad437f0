"""Malformed input: every kind of defect is dropped and counted exactly, in each layout; a file
with nothing valid is refused by name; a run on defective data publishes only valid documents
and records the counts in the model document; a refused input leaves the store untouched."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from api.services.live import rated_entries
from contract import schema
from pipeline.data.movielens import load_movielens
from pipeline.data.source import DatasetConfig, DatasetError
from pipeline.publish.store import Store, new_version
from pipeline.run import run
from pipeline.runtime import dask_client
from tests.support.paths import REPO
from tests.support.paths import TEST_DATA as DATA
from tests.support.pipeline_sample import run_argv, sample_config, write_sample


def write(folder: Path, files: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return folder


def rows(frame: pd.DataFrame) -> list[tuple]:
    return sorted(tuple(r) for r in frame.itertuples(index=False))


# ------------------------------------------------------------------------------- CSV layout

CSV_MOVIES = (
    "movieId,title,genres\n"
    "1,Toy Story (1995),Animation|Comedy\n"
    "2,Jumanji (1995),Adventure\n"
    "2,Jumanji again (1995),Adventure\n"  # duplicate id: the first is kept
    '3,"Amélie (2001)",Comedy|Romance\n'  # UTF-8
).encode() + (
    b"4,Caf\xe9 Society (2016),Drama\n"  # a latin-1 byte in a UTF-8 file: kept, repaired
    b"x,Not an id (2000),Drama\n"  # malformed
    b'5,"Broken quote (1999),Drama\n'  # malformed (unclosed quote)
    b"6,Truncated\n"  # malformed (2 fields)
    b"7,Heat (1995),Action|Crime\r\n"  # CRLF is fine
)
CSV_RATINGS = (
    b"userId,movieId,rating,timestamp\n"
    b"1,1,4.0,100\n"
    b"1,2,3.5,200\n"
    b"1,2,5.0,150\n"  # duplicate, older: dropped
    b"2,3,4.0,100\n"  # duplicate, older than the next line: dropped
    b"2,3,2.5,300\n"
    b"2,7,5.5,100\n"  # out of range
    b"2,7,3.3,100\n"  # out of range (not a half star)
    b"2,7,0.0,100\n"  # out of range
    b"3,1,4.0,-1\n"  # negative timestamp
    b"3,2,4.0,\n"  # missing timestamp
    b"3,999,4.0,100\n"  # unknown movie
    b"3,5,4.0,100\n"  # unknown movie (its movies.csv line was malformed)
    b"1,7\n"  # malformed: truncated
    b"1,x,3.0,100\n"  # malformed: non-numeric id
    b"1,7,3.0,100,9\n"  # malformed: extra field
    b"-1,7,3.0,100\n"  # malformed: negative id
    b"4,7,\xff3.0,100\n"  # undecodable
    b"\n"  # blank: ignored
    b"3,7,1.0,400\n"
)
CSV_LINKS = (
    b"movieId,imdbId,tmdbId\n"
    b"1,0114709,862\n"
    b"2,0113497,\n"  # no tmdbId: fine
    b"2,1,1\n"  # duplicate
    b"3,abc,194\n"  # bad id
    b"7,-5,1\n"  # bad id
    b"999,1,1\n"  # unknown movie
    b"y,1,1\n"  # malformed
    b"4,1\n"  # malformed
)
CSV_TAGS = (
    b"userId,movieId,tag,timestamp\n"
    b"1,1,funny,100\n"
    b'1,1,"quirky, fun",100\n'
    b"1,999,lost,100\n"  # unknown movie
    b"1,2,,100\n"  # empty
    b"1,2,late\n"  # malformed
    b"1,2,Caf\xe9,100\n"  # undecodable
)

CSV_QUALITY = {
    "dropped": 14 + 4 + 6 + 4,
    "repaired": 1,
    "movies": {
        "file": "movies.csv",
        "rows": 9,
        "kept": 5,
        "dropped": {"malformed": 3, "duplicate": 1},
        "repaired": {"bad_encoding": 1},
    },
    "ratings": {
        "file": "ratings.csv",
        "rows": 18,
        "kept": 4,
        "dropped": {
            "bad_encoding": 1,
            "malformed": 4,
            "out_of_range": 3,
            "bad_timestamp": 2,
            "unknown_movie": 2,
            "duplicate": 2,
        },
    },
    "links": {
        "file": "links.csv",
        "rows": 8,
        "kept": 2,
        "dropped": {
            "bad_encoding": 0,
            "malformed": 2,
            "bad_id": 2,
            "unknown_movie": 1,
            "duplicate": 1,
        },
    },
    "tags": {
        "file": "tags.csv",
        "rows": 6,
        "kept": 2,
        "dropped": {"bad_encoding": 1, "malformed": 1, "empty": 1, "unknown_movie": 1},
    },
}


@pytest.fixture
def csv_folder(tmp_path) -> Path:
    return write(
        tmp_path / "ml-bad-csv",
        {
            "movies.csv": CSV_MOVIES,
            "ratings.csv": CSV_RATINGS,
            "links.csv": CSV_LINKS,
            "tags.csv": CSV_TAGS,
        },
    )


@pytest.mark.parametrize("blocksize", ["64MB", "24B"])  # one block, or a block per line or two
def test_csv_layout_defects_are_dropped_and_counted(csv_folder, blocksize, caplog):
    caplog.set_level("INFO", logger="pipeline.data.movielens")
    data = load_movielens(csv_folder, DatasetConfig(blocksize=blocksize))
    if blocksize == "24B":
        assert data.ratings.npartitions > 5  # repeats across blocks are found too
    assert data.quality == CSV_QUALITY
    assert rows(data.ratings.compute()) == [
        (1, 1, 4.0, 100),
        (1, 2, 3.5, 200),
        (2, 3, 2.5, 300),
        (3, 7, 1.0, 400),
    ]
    assert (
        str(data.ratings.dtypes["userId"]) == "int32"
        and str(data.ratings.dtypes["timestamp"]) == "int64"
    )
    movies = data.movies.set_index("movieId")
    assert list(movies.index) == [1, 2, 3, 4, 7]
    assert movies.loc[2, "title"] == "Jumanji (1995)" and movies.loc[3, "name"] == "Amélie"
    assert movies.loc[4, "title"] == "Caf\ufffd Society (2016)" and movies.loc[7, "genres"] == [
        "Action",
        "Crime",
    ]
    assert rows(data.links.astype(object).fillna(-1)) == [(1, 114709, 862), (2, 113497, -1)]
    assert rows(data.tags) == [(1, 1, "funny", 100), (1, 1, "quirky, fun", 100)]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert (
        "ratings.csv: dropped 14 of 18 rows: 1 undecodable, 4 malformed, 3 out of range, "
        "2 missing/negative timestamp, 2 unknown movie, 2 duplicates"
    ) in logged
    assert "movies.csv: 1 rows kept with undecodable bytes replaced by U+FFFD" in logged


# ------------------------------------------------------------------------- .dat layouts, 100k

ONE_M_MOVIES = (  # latin-1, as 1m is published: decoded as latin-1, nothing to repair
    b"1::Toy Story (1995)::Animation|Children's|Comedy\n"
    b"2::Am\xe9lie (2001)::Comedy|Romance\n"
    b"2::Again (2001)::Comedy\n"  # duplicate
    b"3::Se7en::Director's Cut (1995)::Thriller\n"  # '::' inside a title stays in the title
    b"4::No genres field\n"  # malformed
    b"z::Bad (2000)::Drama\n"  # malformed
)
ONE_M_RATINGS = (
    b"1::1::5::978300760\n"
    b"1::2::4.5::978300761\n"  # out of range: 1m has whole stars
    b"1::2::6::978300761\n"  # out of range
    b"1::2::3::978300762\n"
    b"1::2::2::978300700\n"  # duplicate, older
    b"2::3::4::-978300760\n"  # negative timestamp
    b"2::9::4::978300760\n"  # unknown movie
    b"2:3:4:978300760\n"  # malformed
    b"2::3::4\n"  # malformed
    b"2::3::1::978300765"  # no final line end
)


@pytest.mark.parametrize("blocksize", ["64MB", "16B"])
def test_1m_dat_layout_defects(tmp_path, blocksize):
    folder = write(
        tmp_path / "ml-1m",
        {
            "movies.dat": ONE_M_MOVIES,
            "ratings.dat": ONE_M_RATINGS,
            "users.dat": b"1::F::1::10::48067\n",
        },
    )
    data = load_movielens(folder, DatasetConfig(blocksize=blocksize))
    assert data.quality["movies"] == {
        "file": "movies.dat",
        "rows": 6,
        "kept": 3,
        "dropped": {"malformed": 2, "duplicate": 1},
        "repaired": {"bad_encoding": 0},
    }
    assert data.quality["ratings"] == {
        "file": "ratings.dat",
        "rows": 10,
        "kept": 3,
        "dropped": {
            "bad_encoding": 0,
            "malformed": 2,
            "out_of_range": 2,
            "bad_timestamp": 1,
            "unknown_movie": 1,
            "duplicate": 1,
        },
    }
    assert data.quality["dropped"] == 3 + 7 and data.quality["repaired"] == 0
    assert rows(data.ratings.compute()) == [
        (1, 1, 5.0, 978300760),
        (1, 2, 3.0, 978300762),
        (2, 3, 1.0, 978300765),
    ]
    movies = data.movies.set_index("movieId")
    assert (
        movies.loc[2, "title"] == "Amélie (2001)"
        and movies.loc[3, "name"] == "Se7en::Director's Cut"
    )


def test_10m_dat_layout_half_stars_and_a_damaged_utf8_line(tmp_path):
    folder = write(
        tmp_path / "ml-10m",
        {
            "movies.dat": "1::Toy Story (1995)::Adventure\n4973::Amélie (2001)::Comedy\n".encode()
            + b"5::Caf\xe9 (2016)::Drama\n",
            "ratings.dat": b"1::1::4.5::100\n1::4973::0.5::100\n1::5::0.25::100\n",
            "tags.dat": b"1::1::Pixar: fun::100\n1::77::x::100\n",
        },
    )
    data = load_movielens(folder)
    assert data.quality["movies"]["repaired"] == {"bad_encoding": 1}
    assert (
        data.quality["ratings"]["dropped"]["out_of_range"] == 1
        and data.quality["ratings"]["kept"] == 2
    )
    assert data.quality["tags"]["dropped"] == {
        "bad_encoding": 0,
        "malformed": 0,
        "empty": 0,
        "unknown_movie": 1,
    }
    assert data.movies.set_index("movieId").loc[4973, "title"] == "Amélie (2001)"
    assert data.tags["tag"].tolist() == ["Pixar: fun"]


def test_100k_layout_defects(tmp_path):
    animation = "|".join(["0", "0", "0", "1"] + ["0"] * 15)
    bad_flag = "|".join(["0", "2"] + ["0"] * 17)  # a flag of 2: malformed
    folder = write(
        tmp_path / "ml-100k",
        {
            "u.item": (
                f"1|Toy Story (1995)|01-Jan-1995||http://x|{animation}\n"
                f"2|GoldenEye (1995)|01-Jan-1995||http://x|{bad_flag}\n"
            ).encode(),
            "u.genre": (DATA / "ml-100k" / "u.genre").read_bytes(),
            "u.data": b"1\t1\t3\t100\n1\t1\t3.5\t100\n2\t1\t0\t100\n2\t1\t5\t-3\n3\t1\n3\t2\t4\t100\n",
        },
    )
    data = load_movielens(folder)
    assert data.quality["movies"]["dropped"] == {"malformed": 1, "duplicate": 0}
    assert data.quality["ratings"] == {
        "file": "u.data",
        "rows": 6,
        "kept": 1,
        "dropped": {
            "bad_encoding": 0,
            "malformed": 1,
            "out_of_range": 2,
            "bad_timestamp": 1,
            "unknown_movie": 1,
            "duplicate": 0,
        },
    }
    assert data.movies["genres"].tolist() == [["Animation"]]


# ---------------------------------------------------------------------------- clean files


@pytest.mark.parametrize("folder", ["ml-csv", "ml-1m", "ml-10m", "ml-100k"])
def test_clean_files_report_zeros(folder):
    quality = load_movielens(DATA / folder).quality
    assert quality["dropped"] == 0 and quality["repaired"] == 0
    for table, report in quality.items():
        if isinstance(report, dict):
            assert set(report["dropped"].values()) == {0}, table
            assert report["kept"] == report["rows"] > 0, table


def test_bundled_set_is_clean():
    data = load_movielens("ml-latest-small")
    assert data.quality["dropped"] == 0 and data.quality["repaired"] == 0
    assert data.quality["ratings"]["rows"] == data.quality["ratings"]["kept"] == 100836
    assert len(data.ratings) == 100836


# ---------------------------------------------------------------------- repeats across blocks


def test_repeats_are_resolved_like_pandas_whatever_the_blocks(tmp_path):
    """Shuffled ratings with many repeats (ties on the timestamp too): the kept rows are the
    latest per (user, movie), the last in the file on a tie, with any number of blocks."""
    rng = np.random.default_rng(3)
    n = 4000
    frame = pd.DataFrame(
        {
            "userId": rng.integers(1, 60, n),
            "movieId": rng.integers(1, 40, n),
            "rating": rng.integers(1, 11, n) / 2,
            "timestamp": rng.integers(0, 50, n),
        }
    )
    folder = write(
        tmp_path / "shuffled",
        {
            "movies.csv": (
                "movieId,title,genres\n" + "".join(f"{m},M{m} (2000),Drama\n" for m in range(1, 40))
            ).encode()
        },
    )
    frame.to_csv(folder / "ratings.csv", index=False)
    expected = (
        frame.assign(pos=np.arange(n))
        .sort_values(["userId", "movieId", "timestamp", "pos"])
        .drop_duplicates(["userId", "movieId"], keep="last")
        .drop(columns="pos")
    )
    for blocksize in ("64MB", "2KB", "300B"):
        data = load_movielens(folder, DatasetConfig(blocksize=blocksize))
        assert data.quality["ratings"]["dropped"]["duplicate"] == n - len(expected)
        assert rows(data.ratings.compute()) == rows(
            expected.astype({"userId": "int32", "movieId": "int32"})
        ), blocksize


# ------------------------------------------------------------------------------ refusals

GOOD_MOVIES = b"movieId,title,genres\n1,Toy Story (1995),Comedy\n"


@pytest.mark.parametrize(
    "ratings, reason",
    [
        (
            b"userId,movieId,rating,timestamp\n",
            "ratings.csv: refused: no valid rows (0 data rows read)",
        ),
        (
            b"userId,movieId,rating,timestamp\n1,1,9,1\n1,x\n",
            "ratings.csv: refused: no valid rows (2 data rows read: 1 malformed, 1 out of range)",
        ),
        (
            b"user,movie,stars,time\n1,1,4.0,1\n",
            "ratings.csv: refused: its header 'user,movie,stars,time' lacks "
            "the column(s) userId, movieId, rating, timestamp",
        ),
        (b"", "ratings.csv: refused: the file is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "ratings.csv: refused: its header"),
    ],
)
def test_ratings_file_without_valid_rows_is_refused(tmp_path, ratings, reason):
    folder = write(tmp_path / "refused", {"movies.csv": GOOD_MOVIES, "ratings.csv": ratings})
    with pytest.raises(DatasetError) as err:
        load_movielens(folder)
    assert str(folder / "ratings.csv") in str(err.value) and reason in str(err.value)


def test_movies_file_without_valid_rows_is_refused(tmp_path):
    folder = write(
        tmp_path / "refused",
        {
            "movies.csv": b"movieId,title,genres\nx,y,z\n1,,Comedy\n",
            "ratings.csv": b"userId,movieId,rating,timestamp\n1,1,4.0,1\n",
        },
    )
    with pytest.raises(
        DatasetError, match=r"movies\.csv: refused: no valid rows \(2 data rows read: 2 malformed\)"
    ):
        load_movielens(folder)
    (folder / "movies.csv").unlink()
    write(folder, {"movies.dat": b"\n", "ratings.dat": b"1::1::4::1\n"})
    with pytest.raises(
        DatasetError, match=r"movies\.dat: refused: no valid rows \(0 data rows read\)"
    ):
        load_movielens(folder)


def test_unreadable_file_is_refused(tmp_path, monkeypatch):
    folder = write(
        tmp_path / "refused",
        {"movies.csv": GOOD_MOVIES, "ratings.csv": b"userId,movieId,rating,timestamp\n1,1,4.0,1\n"},
    )
    read_bytes = Path.read_bytes

    def failing(path: Path) -> bytes:
        if path.name == "movies.csv":
            raise OSError(5, "Input/output error")
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", failing)
    with pytest.raises(
        DatasetError,
        match=r"movies\.csv: refused: the file cannot be read \(\[Errno 5\] Input/output",
    ):
        load_movielens(folder)


# ----------------------------------------------------------------- a run into a real store


def inject_defects(sample: Path) -> dict:
    """Append defective rows to a clean sample; returns what the run must make of them."""
    ratings = pd.read_csv(sample / "ratings.csv")
    first = ratings[ratings.userId == 1].iloc[0]
    second = ratings[ratings.userId == 2].iloc[0]
    movie, other, later = int(first.movieId), int(second.movieId), int(first.timestamp) + 1000
    with open(sample / "ratings.csv", "ab") as fh:
        fh.write(
            f"1,{movie},0.5,{later}\n"  # a later re-rating of a movie: replaces it
            f"2,{other},5.0,0\n"  # an older re-rating: dropped
            f"3,{movie},7.0,1\n"  # out of range
            f"3,{movie},-1.0,1\n"  # out of range
            f"4,424242,4.0,1\n"  # unknown movie
            f"5,{movie},4.0,-20\n"  # negative timestamp
            f"6,{movie}\n"  # truncated
            f"6,{movie},3.0,1,1\n".encode()  # extra field
            + f"7,{movie},\xff,1\n".encode("latin-1")  # undecodable
        )
    with open(sample / "movies.csv", "ab") as fh:
        fh.write(f"{movie},A duplicate title (2000),Drama\n".encode())
    return {
        "user": 1,
        "movie": movie,
        "rating": 0.5,
        "timestamp": later,
        "keep": (2, other, float(second.rating)),
        "dropped": {
            "bad_encoding": 1,
            "malformed": 2,
            "out_of_range": 2,
            "bad_timestamp": 1,
            "unknown_movie": 1,
            "duplicate": 2,
        },
    }


def test_run_on_defective_data_publishes_only_valid_documents(mongo_client, mongo_url, tmp_path):
    sample = write_sample(tmp_path / "ml-defects", max_user=40)
    expect = inject_defects(sample)
    db = mongo_client.get_database("test_data_quality_run")
    mongo_client.drop_database(db.name)
    store = Store(db, url=mongo_url)
    config = sample_config(sample, tmp_path / "runs", evaluate=False)
    try:
        with dask_client(config.dask):
            result = run(config, store, new_version())
        assert result.report["data_quality"]["ratings"]["dropped"] == expect["dropped"]
        model = db[schema.MODELS].find_one({"_id": result.version})
        quality = model["dataset"]["quality"]
        assert quality["ratings"]["dropped"] == expect["dropped"]
        assert quality["movies"]["dropped"] == {"malformed": 0, "duplicate": 1}
        assert set(quality["links"]["dropped"].values()) == {
            0
        }  # tmdbId written as "862.0" is an id
        assert quality["dropped"] == sum(expect["dropped"].values()) + 1

        movies = {d["_id"] for d in store.collection(schema.MOVIES).find({}, {"_id": 1})}
        n_users = 0
        for doc in store.collection(schema.USERS).find({}, {"ratings_packed": 1}):
            n_users += 1
            ids = [r["movieId"] for r in rated_entries(doc)]
            assert len(ids) == len(set(ids)), doc["_id"]  # no movie twice
            assert set(ids) <= movies, doc["_id"]  # no unknown movie
            for r in rated_entries(doc):
                assert 0.5 <= r["rating"] <= 5.0 and r["rating"] * 2 == int(r["rating"] * 2), doc[
                    "_id"
                ]
                assert r["timestamp"] >= 0
        assert n_users == 40 and model["dataset"]["n_users"] == 40
        one = {
            r["movieId"]: r
            for r in rated_entries(store.collection(schema.USERS).find_one({"_id": 1}))
        }
        assert (one[expect["movie"]]["rating"], one[expect["movie"]]["timestamp"]) == (
            expect["rating"],
            expect["timestamp"],
        )
        uid, mid, rating = expect["keep"]
        two = {
            r["movieId"]: r["rating"]
            for r in rated_entries(store.collection(schema.USERS).find_one({"_id": uid}))
        }
        assert two[mid] == rating
        assert (
            store.collection(schema.MOVIES).find_one({"_id": expect["movie"]})["title"]
            != "A duplicate title (2000)"
        )

        # A refused input: non-zero exit naming the file and the reason; the store is untouched.
        refused = write(
            tmp_path / "ml-refused",
            {
                "movies.csv": (sample / "movies.csv").read_bytes(),
                "ratings.csv": b"userId,movieId,rating,timestamp\n1,1,11,1\n",
            },
        )
        before = set(db.list_collection_names())
        env = {**os.environ, "MONGODB_URL": mongo_url, "PYTHONPATH": str(REPO)}
        proc = subprocess.run(
            run_argv(refused, db.name, tmp_path / "runs"),
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 2, proc.stderr
        assert (
            f"{refused / 'ratings.csv'}: refused: no valid rows (1 data rows read: 1 out of range)"
            in proc.stderr
        )
        assert "the store was not changed" in proc.stderr
        assert store.current()["version"] == result.version
        assert set(db.list_collection_names()) == before
    finally:
        mongo_client.drop_database(db.name)
