"""JSON encoding of function results, fast for numpy and pandas.

``dumps(obj)`` returns UTF-8 bytes. orjson does the work; numpy arrays and scalars go to it
natively, and :func:`default` turns everything else it can't encode into something it can.

What values become
------------------
- ``float('nan')``, ``inf``, ``-inf`` (Python, numpy, inside arrays) → ``null``.
- numpy arrays → nested lists; numpy scalars → numbers / booleans.
- ``datetime``/``date``/``time`` and ``pandas.Timestamp`` → ISO 8601 strings; ``NaT``/``pd.NA`` → ``null``.
- ``timedelta``/``pandas.Timedelta`` → seconds as a number.
- integers of any size → JSON numbers with every digit (beyond 64 bits, JavaScript's
  ``JSON.parse`` rounds them, as it does any integer beyond 2**53).
- ``Decimal`` → a JSON number with every digit kept (``Decimal('NaN')`` → ``null``).
- ``set``/``frozenset`` → a list (sorted when the items sort).
- dataclasses → objects; ``enum`` members → their value; ``uuid.UUID`` and paths → strings;
  ``bytes`` → base64 text; ``complex`` → ``[real, imag]``.
- ``pandas.Series`` → ``{"name": ..., "index": [...], "data": [...]}``.
- ``pandas.DataFrame`` → column-oriented, so large frames encode at array speed::

      {"columns": ["a", "b"], "index": [0, 1, 2], "data": [[a0, a1, a2], [b0, b1, b2]]}

  ``data[i]`` is the column named ``columns[i]``; row ``j`` is ``index[j]``. A MultiIndex gives
  lists as labels. ``livepandas.js`` has ``livepandas.rows(frame)`` to turn it into records.
- ``pandas.Index`` → a list.

Anything else raises ``TypeError`` naming its type.
"""

import base64
import dataclasses
import datetime
import decimal
import json
import os
import re
import sys

import orjson

__all__ = ["dumps", "loads", "default", "frame_to_json"]

# numpy values are not handed to orjson directly (no OPT_SERIALIZE_NUMPY at the top): orjson
# would write a datetime64 NaT as 1970-01-01 or 1677-09-21, or fail. default() checks them first
# and passes the arrays it has vetted to orjson's numpy writer, embedded as a Fragment.
_OPTIONS = orjson.OPT_NON_STR_KEYS
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_LONG_DIGITS = re.compile(rb"[0-9]{20}")
_LONG_DIGITS_TEXT = re.compile(r"[0-9]{20}")


def loads(data):
    """Decode JSON (bytes or str), as orjson does, except that integers of any size stay exact.

    orjson turns an integer beyond 64 bits into a float; input holding a run of 20 digits (which
    may be one) is decoded again by the standard library, which keeps every digit. Invalid JSON
    raises ``orjson.JSONDecodeError`` (a ``ValueError``) either way.
    """
    value = orjson.loads(data)
    pattern = _LONG_DIGITS_TEXT if isinstance(data, str) else _LONG_DIGITS
    if pattern.search(data) is None:
        return value
    try:
        return json.loads(data if isinstance(data, str) else bytes(data))
    except RecursionError:  # nested deeper than the standard library goes: keep orjson's result
        return value


def dumps(obj):
    """Encode *obj* as JSON bytes (see the module docstring for what each type becomes)."""
    try:
        return orjson.dumps(obj, default=default, option=_OPTIONS)
    except orjson.JSONEncodeError as exc:
        if "64-bit" not in str(exc):
            raise
    # Integers beyond 64 bits are valid JSON, but orjson won't write them: a slower second pass
    # writes them as their digits (only values that hold one pay for it).
    return orjson.dumps(_wide(obj), default=_wide_default, option=_OPTIONS)


def _wide(obj):
    """*obj* with every integer beyond 64 bits, in lists, tuples and dicts, as a digits Fragment."""
    if _beyond_64_bits(obj):
        return orjson.Fragment(str(int(obj)))
    if isinstance(obj, dict):
        return {str(int(key)) if _beyond_64_bits(key) else key: _wide(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_wide(value) for value in obj]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):  # orjson writes these itself
        return _wide(dataclasses.asdict(obj))
    return obj


def _beyond_64_bits(value):
    return isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64


def _wide_default(obj):
    return _wide(default(obj))


def default(obj):
    """orjson's ``default`` hook: turn one value orjson can't encode into one it can."""
    # pandas and numpy are never imported here: a value of theirs means they already are.
    pd = sys.modules.get("pandas")
    if pd is not None:
        if isinstance(obj, pd.DataFrame):
            return frame_to_json(obj)
        if isinstance(obj, pd.Series):
            return {"name": obj.name, "index": _index_values(obj.index), "data": _column_values(obj)}
        if isinstance(obj, pd.Index):
            return _index_values(obj)
        if obj is pd.NaT or obj is pd.NA:
            return None
        if isinstance(obj, pd.Timestamp):
            return obj.isoformat()
        if isinstance(obj, pd.Timedelta):
            return obj.total_seconds()
        if isinstance(obj, pd.Interval):
            return [obj.left, obj.right]
        if isinstance(obj, pd.Period):
            return str(obj)
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(obj, np.ndarray):
            return _ndarray(np, obj)
        if isinstance(obj, np.datetime64):
            return None if np.isnat(obj) else orjson.Fragment(orjson.dumps(obj, option=_NUMPY))
        if isinstance(obj, np.generic):
            if obj.dtype.kind in "biuf":  # orjson writes float32 0.1 as 0.1, .item() would not
                try:
                    return orjson.Fragment(orjson.dumps(obj, option=_NUMPY))
                except orjson.JSONEncodeError:
                    pass
            return obj.item()
    if isinstance(obj, decimal.Decimal):
        return orjson.Fragment(str(obj)) if obj.is_finite() else None
    if isinstance(obj, (set, frozenset)):
        try:
            return sorted(obj)
        except TypeError:
            return list(obj)
    if isinstance(obj, datetime.timedelta):
        return obj.total_seconds()
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(obj)).decode("ascii")
    if isinstance(obj, complex):
        return [obj.real, obj.imag]
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, tuple):  # namedtuple subclasses reach here
        return list(obj)
    raise TypeError(f"result of type {type(obj).__module__}.{type(obj).__qualname__} is not JSON serializable")


def frame_to_json(df):
    """The JSON-ready dict of a DataFrame: ``{"columns", "index", "data"}`` (column-oriented)."""
    columns = df.columns.tolist()
    return {
        "columns": columns,
        "index": _index_values(df.index),
        "data": [_column_values(df.iloc[:, i]) for i in range(len(columns))],
    }


def _index_values(index):
    import pandas as pd

    if isinstance(index, pd.RangeIndex):
        import numpy as np

        return np.arange(index.start, index.stop, index.step, dtype=np.int64)
    return _array_values(index)


def _ndarray(np, arr):
    """A numpy array as a Fragment of orjson's fast output (numbers, NaT-free datetimes) or a list."""
    if arr.ndim == 0:
        return default(arr[()])
    kind = arr.dtype.kind
    if kind in "biuf" or (kind == "M" and not np.isnat(arr).any()):
        try:
            return orjson.Fragment(orjson.dumps(np.ascontiguousarray(arr), option=_NUMPY))
        except orjson.JSONEncodeError:  # a dtype orjson doesn't write (float128...)
            pass
    if kind == "M":
        # Through microseconds, as orjson writes them; NaT becomes None.
        return [None if v is None else v.isoformat() for v in arr.astype("M8[us]").astype(object).tolist()]
    return arr.tolist()


def _column_values(series):
    import numpy as np

    # A plain numpy column's .array is a NumpyExtensionArray (its dtype is not an np.dtype):
    # unwrap it, or every int/float column takes the slow object path below.
    return _array_values(series.to_numpy() if isinstance(series.dtype, np.dtype) else series.array)


def _array_values(values):
    """One column (an ExtensionArray, Index or ndarray) as an array orjson takes, or a list."""
    import numpy as np
    import pandas as pd

    dtype = values.dtype
    if isinstance(dtype, np.dtype):
        kind = dtype.kind
        if kind in "biufM":
            return _ndarray(np, np.asarray(values))
        if kind == "m":
            secs = pd.TimedeltaIndex(values).total_seconds()
            return np.asarray(secs, dtype=np.float64)
    if isinstance(dtype, pd.DatetimeTZDtype):
        return [None if v is pd.NaT else v.isoformat() for v in values]
    # Strings, objects, categoricals and nullable dtypes: pd.NA and NaN become None.
    return np.asarray(values, dtype=object).tolist()
