"""Helpers shared by the ``sense`` test modules (this folder is on ``sys.path``)."""


def process_alive(pid):
    """True while *pid* exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return False
    return data[data.rindex(b")") + 2:][:1] not in (b"Z", b"X")


def run_code(kc, code, timeout=10):
    """Run *code* on the kernel behind client *kc*; return its stdout (raises on an error)."""
    out = []

    def hook(msg):
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])
        elif msg["msg_type"] == "error":
            out.append("\n".join(msg["content"]["traceback"]))

    reply = kc.execute_interactive(code, output_hook=hook, timeout=timeout)
    if reply["content"]["status"] != "ok":
        raise AssertionError(f"{code!r} failed on the worker:\n{''.join(out)}")
    return "".join(out)
