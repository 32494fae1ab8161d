"""Result encoding (``livepandas_ipython.jsonutil``), on its own and through a real server."""

import collections
import dataclasses
import datetime
import decimal
import enum
import json
import pathlib
import subprocess
import sys
import uuid

import pytest
import requests
import websocket

from livepandas_ipython.jsonutil import dumps, loads

TIMEOUT = 30  # seconds; generous, only ever waited on, never asserted


@pytest.fixture
def np():
    return pytest.importorskip("numpy")


@pytest.fixture
def pd():
    return pytest.importorskip("pandas")


def roundtrip(value):
    return loads(dumps(value))


# -- plain Python --------------------------------------------------------------------------------


def test_dumps_returns_utf8_bytes():
    assert dumps({"é": "✓", "n": [1, 2.5, None, True]}) == '{"é":"✓","n":[1,2.5,null,true]}'.encode()


def test_nan_and_inf_become_null():
    assert dumps([float("nan"), float("inf"), -float("inf"), 1.5]) == b"[null,null,null,1.5]"


@pytest.mark.parametrize(
    "value, encoded",
    [
        (decimal.Decimal("1.10"), b"1.10"),
        (decimal.Decimal("0.1000000000000000000000000001"), b"0.1000000000000000000000000001"),
        (decimal.Decimal("12345678901234567890.123456789"), b"12345678901234567890.123456789"),
        (decimal.Decimal("-0.5"), b"-0.5"),
        (decimal.Decimal("1E+3"), b"1E+3"),
        (decimal.Decimal("NaN"), b"null"),
        (decimal.Decimal("sNaN"), b"null"),
        (decimal.Decimal("Infinity"), b"null"),
        (decimal.Decimal("-Infinity"), b"null"),
    ],
)
def test_decimal_keeps_every_digit(value, encoded):
    assert dumps(value) == encoded
    assert dumps({"d": [value]}) == b'{"d":[' + encoded + b"]}"


def test_sets_become_sorted_lists():
    assert dumps({3, 1, 2}) == b"[1,2,3]"
    assert dumps(frozenset({"b", "c", "a"})) == b'["a","b","c"]'
    assert sorted(roundtrip({1, "a", None}), key=repr) == sorted([1, "a", None], key=repr)  # unsortable: any order


@dataclasses.dataclass
class Point:
    x: int
    y: float


@dataclasses.dataclass
class Shape:
    name: str
    points: list
    price: decimal.Decimal = decimal.Decimal("9.99")


def test_dataclasses_become_objects():
    shape = Shape("tri", [Point(0, 0.5), Point(1, float("nan"))])
    assert dumps(shape) == b'{"name":"tri","points":[{"x":0,"y":0.5},{"x":1,"y":null}],"price":9.99}'


def test_dataclass_class_itself_is_not_an_object():
    with pytest.raises(TypeError, match="type"):
        dumps(Point)


class Color(enum.Enum):
    RED = "red"
    BLUE = 2


class Level(enum.IntEnum):
    HIGH = 3


def test_enum_members_become_their_values():
    assert dumps([Color.RED, Color.BLUE, Level.HIGH]) == b'["red",2,3]'


def test_bytes_become_base64():
    assert dumps(b"\x00\xffhi") == b'"AP9oaQ=="'
    assert dumps(bytearray(b"hi")) == b'"aGk="'
    assert dumps(memoryview(b"hi")) == b'"aGk="'


def test_complex_becomes_a_pair():
    assert dumps(1 + 2j) == b"[1.0,2.0]"
    assert dumps(complex(0, float("nan"))) == b"[0.0,null]"


def test_paths_and_uuids_become_strings():
    assert dumps(pathlib.PurePosixPath("/data/x.csv")) == b'"/data/x.csv"'
    assert dumps(pathlib.Path("rel/y")) == b'"rel/y"'
    assert dumps(uuid.UUID(int=1)) == b'"00000000-0000-0000-0000-000000000001"'


def test_tuples_and_namedtuples_become_lists():
    Pair = collections.namedtuple("Pair", "left right")
    assert dumps({"p": Pair(1, "b"), "t": (1, (2, 3))}) == b'{"p":[1,"b"],"t":[1,[2,3]]}'


def test_dates_and_durations():
    utc = datetime.timezone.utc
    assert roundtrip(
        {
            "dt": datetime.datetime(2024, 1, 2, 3, 4, 5, 600000),
            "aware": datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=utc),
            "date": datetime.date(2024, 1, 2),
            "time": datetime.time(1, 2, 3),
            "td": datetime.timedelta(minutes=1, milliseconds=500),
        }
    ) == {
        "dt": "2024-01-02T03:04:05.600000",
        "aware": "2024-01-02T03:04:05+00:00",
        "date": "2024-01-02",
        "time": "01:02:03",
        "td": 60.5,
    }


def test_non_string_keys_become_strings():
    assert dumps({1: "a", 2.5: "b", False: "c", None: "d"}) == b'{"1":"a","2.5":"b","false":"c","null":"d"}'


class Opaque:
    pass


def test_integers_beyond_64_bits_keep_every_digit():
    assert dumps(2**64 - 1) == b"18446744073709551615"  # still orjson's fast path
    assert dumps(-(2**63)) == b"-9223372036854775808"
    assert dumps([1, -(2**80), (2**100,)]) == b"[1,-1208925819614629174706176,[1267650600228229401496703205376]]"
    assert dumps({"a": 2**64, 2**65: True}) == b'{"a":18446744073709551616,"36893488147419103232":true}'
    assert dumps(Point(2**70, 0.5)) == b'{"x":1180591620717411303424,"y":0.5}'  # dataclass
    assert dumps({"s": {2**70, 1}, "nan": float("nan")}) == b'{"s":[1,1180591620717411303424],"nan":null}'
    assert json.loads(dumps({"big": 10**30}))["big"] == 10**30


def test_unsupported_type_raises_type_error_naming_it():
    with pytest.raises(TypeError, match="Opaque"):
        dumps({"x": [Opaque()]})
    with pytest.raises(TypeError, match="object"):
        dumps(object())


def test_plain_values_do_not_import_pandas():
    # (orjson itself imports numpy on the first value it can't encode, when OPT_SERIALIZE_NUMPY is on.)
    code = (
        "import sys, decimal, livepandas_ipython.jsonutil as j;"
        "assert j.dumps({'a': {1, 2}, 'd': decimal.Decimal('1.5')}) == b'{\"a\":[1,2],\"d\":1.5}';"
        "print('pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT, check=True)
    assert out.stdout.strip() == "False"


# -- numpy ---------------------------------------------------------------------------------------


def test_numpy_scalars(np):
    assert dumps(
        [np.int8(-1), np.int64(3), np.uint64(2**64 - 1), np.float64(0.5), np.bool_(True), np.bool_(False)]
    ) == (b"[-1,3,18446744073709551615,0.5,true,false]")
    assert dumps(np.float32(0.1)) == b"0.1"
    assert dumps([np.float64("nan"), np.float32("inf"), np.float64("-inf")]) == b"[null,null,null]"
    assert dumps(np.str_("x")) == b'"x"'


def test_numpy_arrays(np):
    assert dumps(np.arange(6).reshape(2, 3)) == b"[[0,1,2],[3,4,5]]"
    assert dumps(np.array([0.1, np.nan, np.inf, -np.inf], dtype=np.float32)) == b"[0.1,null,null,null]"
    assert dumps(np.array([1.5, np.nan])) == b"[1.5,null]"
    assert dumps(np.array([True, False])) == b"[true,false]"
    assert dumps(np.array(["a", "bc"])) == b'["a","bc"]'
    assert dumps(np.array([1, "a", None, np.nan], dtype=object)) == b'[1,"a",null,null]'
    assert dumps(np.array([1 + 2j])) == b"[[1.0,2.0]]"
    assert dumps(np.array([], dtype=float)) == b"[]"
    assert dumps(np.array(5)) == b"5"


@pytest.mark.parametrize("dtype", ["int64", "int8", "uint16", "float64", "float32", "bool"])
def test_non_contiguous_arrays(np, dtype):
    a = np.arange(12).reshape(3, 4).astype(dtype)
    for view in (a[:, ::2], a.T, a[::-1], a[::2, 1:3]):
        assert not view.flags.c_contiguous
        assert roundtrip(view) == view.tolist()
    if dtype == "float32":
        assert dumps(np.array([0.1, 0.2, 0.3], dtype=np.float32)[::2]) == b"[0.1,0.3]"


def test_datetime64_arrays(np):
    a = np.array(["2024-01-01T12:00", "2024-02-29T00:00:01"], dtype="datetime64[s]")
    assert roundtrip(a) == ["2024-01-01T12:00:00", "2024-02-29T00:00:01"]
    assert roundtrip(np.datetime64("2024-01-01")) == "2024-01-01T00:00:00"


@pytest.mark.parametrize("unit", ["D", "s", "ms", "us", "ns"])
def test_datetime64_array_with_nat_becomes_null(np, unit):
    a = np.array(["2024-01-01", "NaT"], dtype=f"datetime64[{unit}]")
    assert roundtrip(a) == ["2024-01-01T00:00:00", None]


@pytest.mark.parametrize(
    "unit",
    ["D", "s", "ns"],
)
def test_strided_datetime64_array_with_nat_becomes_null(np, unit):
    a = np.array(["2024-01-01", "2024-01-05", "NaT"], dtype=f"datetime64[{unit}]")[::2]
    assert not a.flags.c_contiguous
    assert roundtrip(a) == ["2024-01-01T00:00:00", None]


@pytest.mark.parametrize("unit", ["D", "s", "ns"])
def test_numpy_nat_scalar_becomes_null(np, unit):
    assert dumps({"t": np.datetime64("NaT", unit)}) == b'{"t":null}'


# -- pandas --------------------------------------------------------------------------------------


def test_dataframe_is_column_oriented(pd):
    df = pd.DataFrame({"a": [1, 2, 3], "b": [0.5, float("nan"), float("inf")]}, index=["x", "y", "z"])
    assert dumps(df) == b'{"columns":["a","b"],"index":["x","y","z"],"data":[[1,2,3],[0.5,null,null]]}'
    assert list(roundtrip(df)) == ["columns", "index", "data"]


def test_dataframe_mixed_dtypes(pd, np):
    df = pd.DataFrame(
        {
            "int": [1, 2, 3],
            "float": [1.5, np.nan, -np.inf],
            "str": ["a", None, np.nan],
            "obj": pd.Series(["a", None, np.nan], dtype=object),
            "Int64": pd.array([1, None, 3], dtype="Int64"),
            "Float64": pd.array([0.5, None, 1.0], dtype="Float64"),
            "boolean": pd.array([True, None, False], dtype="boolean"),
            "bool": [True, False, True],
            "cat": pd.Categorical(["x", "y", None]),
            "tz": pd.to_datetime(["2024-01-01", None, "2024-07-01 12:30"], format="ISO8601").tz_localize(
                "Europe/Paris"
            ),
            "naive": pd.to_datetime(["2024-01-01", "2024-01-02 03:04:05", "2024-01-03"], format="ISO8601"),
            "naive_nat": pd.to_datetime(["2024-01-01", None, "2024-01-03"]),
            "td": pd.to_timedelta(["1s", None, "2min"]),
            "nested": [{"k": 1}, [1, 2], None],
        }
    )
    assert pd.isna(df["Int64"][1]) and df["Int64"][1] is pd.NA
    assert roundtrip(df) == {
        "columns": list(df.columns),
        "index": [0, 1, 2],
        "data": [
            [1, 2, 3],
            [1.5, None, None],
            ["a", None, None],
            ["a", None, None],
            [1, None, 3],
            [0.5, None, 1.0],
            [True, None, False],
            [True, False, True],
            ["x", "y", None],
            ["2024-01-01T00:00:00+01:00", None, "2024-07-01T12:30:00+02:00"],
            ["2024-01-01T00:00:00", "2024-01-02T03:04:05", "2024-01-03T00:00:00"],
            ["2024-01-01T00:00:00", None, "2024-01-03T00:00:00"],
            [1.0, None, 120.0],
            [{"k": 1}, [1, 2], None],
        ],
    }


def test_dataframe_float32_column_encodes_like_a_float32_array(pd, np):
    values = np.array([0.1, np.nan], dtype=np.float32)
    df = pd.DataFrame({"x": values})
    assert dumps(values) == b"[0.1,null]"
    assert dumps(df) == b'{"columns":["x"],"index":[0,1],"data":[[0.1,null]]}'
    assert dumps(df["x"]) == b'{"name":"x","index":[0,1],"data":[0.1,null]}'


def test_dataframe_multiindex(pd):
    rows = pd.MultiIndex.from_tuples([("a", 1), ("a", 2), ("b", 1)], names=["k", "n"])
    cols = pd.MultiIndex.from_tuples([("v", "x"), ("v", "y")])
    df = pd.DataFrame([[1, 2], [3, 4], [5, 6]], index=rows, columns=cols)
    assert roundtrip(df) == {
        "columns": [["v", "x"], ["v", "y"]],
        "index": [["a", 1], ["a", 2], ["b", 1]],
        "data": [[1, 3, 5], [2, 4, 6]],
    }


def test_dataframe_odd_shapes(pd, np):
    assert roundtrip(pd.DataFrame()) == {"columns": [], "index": [], "data": []}
    dup = pd.DataFrame([[1, 2]], columns=["a", "a"])
    assert roundtrip(dup) == {"columns": ["a", "a"], "index": [0], "data": [[1], [2]]}
    sliced = pd.DataFrame(np.arange(12).reshape(4, 3), columns=list("abc")).iloc[::2, ::2]
    assert roundtrip(sliced) == {"columns": ["a", "c"], "index": [0, 2], "data": [[0, 6], [2, 8]]}
    ints = pd.DataFrame({10: [1], 20: [2]}, index=pd.to_datetime(["2024-01-01"]).tz_localize("UTC"))
    assert roundtrip(ints) == {"columns": [10, 20], "index": ["2024-01-01T00:00:00+00:00"], "data": [[1], [2]]}


def test_series_and_index(pd):
    s = pd.Series([1.5, None], index=["a", "b"], name="price")
    assert dumps(s) == b'{"name":"price","index":["a","b"],"data":[1.5,null]}'
    assert roundtrip(pd.Series(["x", None], dtype="string")) == {"name": None, "index": [0, 1], "data": ["x", None]}
    assert dumps(pd.Index([3, 1, 2])) == b"[3,1,2]"
    assert dumps(pd.RangeIndex(2, 9, 3)) == b"[2,5,8]"
    assert roundtrip(pd.DatetimeIndex(["2024-01-01", None])) == ["2024-01-01T00:00:00", None]
    assert roundtrip(pd.CategoricalIndex(["a", "b"])) == ["a", "b"]


def test_pandas_scalars(pd):
    assert roundtrip(
        {
            "ts": pd.Timestamp("2024-01-01 12:00"),
            "tz": pd.Timestamp("2024-01-01 12:00", tz="UTC"),
            "nat": pd.NaT,
            "na": pd.NA,
            "td": pd.Timedelta("1.5s"),
            "period": pd.Period("2024-01", freq="M"),
            "interval": pd.Interval(0, 1),
        }
    ) == {
        "ts": "2024-01-01T12:00:00",
        "tz": "2024-01-01T12:00:00+00:00",
        "nat": None,
        "na": None,
        "td": 1.5,
        "period": "2024-01",
        "interval": [0, 1],
    }


def test_frames_nested_in_containers(pd):
    value = {"frame": pd.DataFrame({"a": [1]}), "series": [pd.Series([2], name="s")]}
    assert roundtrip(value) == {
        "frame": {"columns": ["a"], "index": [0], "data": [[1]]},
        "series": [{"name": "s", "index": [0], "data": [2]}],
    }


# -- through the server --------------------------------------------------------------------------


def _frame():
    import pandas as pd

    return pd.DataFrame(
        {"city": ["Oslo", None], "temp": [3.5, float("nan")], "n": pd.array([1, None], dtype="Int64")},
        index=pd.Index(["r1", "r2"], name="row"),
    )


FRAME_JSON = {"columns": ["city", "temp", "n"], "index": ["r1", "r2"], "data": [["Oslo", None], [3.5, None], [1, None]]}


def test_dataframe_end_to_end_over_http_and_websocket(serve, pd):
    async def aframe():
        return _frame()

    def stream():
        yield _frame()
        return _frame()["temp"]

    server = serve({"frame": _frame, "aframe": aframe, "stream": stream})
    base = f"http://127.0.0.1:{server.port}"
    for name in ("frame", "aframe"):
        r = requests.get(f"{base}/{name}", timeout=TIMEOUT)
        assert r.status_code == 200
        assert r.json() == {"result": FRAME_JSON}
    r = requests.get(f"{base}/stream", timeout=TIMEOUT)
    assert [json.loads(line) for line in r.text.splitlines()] == [
        {"partial": FRAME_JSON},
        {"result": {"name": "temp", "index": ["r1", "r2"], "data": [3.5, None]}, "done": True},
    ]
    ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/frame/ws", timeout=TIMEOUT)
    try:
        ws.send("{}")
        assert json.loads(ws.recv()) == {"result": FRAME_JSON}
    finally:
        ws.close()


def test_numpy_and_python_values_end_to_end(serve, np):
    def values():
        return {
            "array": np.array([[1.0, np.nan], [np.inf, 2.0]]),
            "scalar": np.int64(7),
            "decimal": decimal.Decimal("0.10000000000000000001"),
            "set": {"b", "a"},
            "point": Point(1, 2.5),
        }

    r = requests.get(f"http://127.0.0.1:{serve({'values': values}).port}/values", timeout=TIMEOUT)
    assert r.status_code == 200
    assert '"decimal":0.10000000000000000001' in r.text  # every digit reaches the client
    assert r.json() == {
        "result": {
            "array": [[1.0, None], [None, 2.0]],
            "scalar": 7,
            "decimal": 0.1,
            "set": ["a", "b"],
            "point": {"x": 1, "y": 2.5},
        }
    }


def test_big_integer_result_end_to_end(serve):
    server = serve({"factorial": lambda n=25: __import__("math").factorial(n)})
    base = f"http://127.0.0.1:{server.port}/factorial"
    for _ in range(8):  # on the pool, then inlined and on the fast path: the same answer
        r = requests.get(base, params={"kwargs": '{"n": 25}'}, timeout=TIMEOUT)
        assert r.status_code == 200
        assert r.text == '{"result":15511210043330985984000000}'
    ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/factorial/ws", timeout=TIMEOUT)
    try:
        ws.send('{"n": 30}')
        assert ws.recv() == '{"result":265252859812191058636308480000000}'
    finally:
        ws.close()


def test_big_integer_arguments_stay_exact_on_every_path(serve):
    from livepandas_ipython.jsonutil import loads as lp_loads

    assert lp_loads(b'{"n": 100000000000000000000, "s": "123456789012345678901"}') == {
        "n": 10**20,
        "s": "123456789012345678901",
    }
    assert lp_loads('[18446744073709551616, 1.5]') == [2**64, 1.5]
    with pytest.raises(ValueError):
        lp_loads(b'{"n": NaN, "m": 100000000000000000000}')  # still orjson's validation

    server = serve({"succ": lambda n=0: n + 1})
    base = f"http://127.0.0.1:{server.port}/succ"
    big = 2**70
    for _ in range(8):  # pool, then inline and the fast path
        r = requests.get(base, params={"kwargs": json.dumps({"n": big})}, timeout=TIMEOUT)
        assert r.text == f'{{"result":{big + 1}}}'
    r = requests.post(base, json={"n": big}, timeout=TIMEOUT)
    assert r.text == f'{{"result":{big + 1}}}'
    ws = websocket.create_connection(f"ws://127.0.0.1:{server.port}/succ/ws", timeout=TIMEOUT)
    try:
        ws.send(json.dumps({"n": -big}))
        assert ws.recv() == f'{{"result":{-big + 1}}}'
    finally:
        ws.close()


def test_unencodable_result_end_to_end(serve):
    server = serve({"opaque": lambda: {"x": Opaque()}}, debug=True)
    r = requests.get(f"http://127.0.0.1:{server.port}/opaque", timeout=TIMEOUT)
    assert r.status_code == 500
    body = r.json()
    assert body["type"] == "TypeError"
    assert "Opaque" in body["exception"]
    assert server.stats.last_error["type"] == "TypeError"
