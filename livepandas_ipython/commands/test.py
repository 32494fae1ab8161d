"""``test``: call one function of a canvas in this process and return its JSON result."""

from .. import jsonutil
from ..canvas import describe_exception
from ..errors import BadRequest, LivePandasError

__all__ = ["run"]


class CallFailed(LivePandasError):
    """The function raised; the message names the exception and where it was raised."""


def run(canvas, name, kwargs_json=None):
    """Call *name* on *canvas* with the JSON object *kwargs_json*; return the result as JSON text.

    Raises
    ------
    FunctionNotFound
        No such function (the message lists the available ones).
    BadRequest
        *kwargs_json* is not a JSON object, or the arguments don't bind.
    CallFailed
        The function raised (the message names the exception, file and line).
    """
    kwargs = {}
    if kwargs_json is not None and kwargs_json.strip():
        try:
            kwargs = jsonutil.loads(kwargs_json)
        except jsonutil.orjson.JSONDecodeError as exc:
            raise BadRequest(f"--kwargs is not valid JSON: {exc}") from None
    fn = canvas.get(name)
    if not isinstance(kwargs, dict):
        raise BadRequest("--kwargs must be a JSON object, like '{\"x\": 1}'")
    fn.check(kwargs)
    try:
        result = canvas.call(name, kwargs)
    except Exception as exc:
        raise CallFailed(describe_exception(exc, canvas.filename)) from exc
    try:
        return jsonutil.dumps(result).decode("utf-8")
    except TypeError as exc:
        raise CallFailed(f"TypeError: {exc}") from None
