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


def write_framework(directory, reports):
    """Write ``distributedFramework.py``, a stand-in for the seed's framework, into *directory*.

    Its ``contactMaster(info)`` writes ``<reports>/<SENSE_DASHBOARD_ID>.json``: the unpickled
    *info*, ``SENSE_MASTER_ID`` and the worker's memory and CPU limits.
    """
    import os
    import textwrap

    with open(os.path.join(str(directory), "distributedFramework.py"), "w") as f:
        f.write(
            textwrap.dedent(
                f"""\
                import json, os, pickle, resource

                def contactMaster(info):
                    me = os.environ["SENSE_DASHBOARD_ID"]
                    with open(os.path.join({str(reports)!r}, me + ".json"), "w") as f:
                        json.dump({{
                            "info": pickle.loads(info),
                            "master": os.environ["SENSE_MASTER_ID"],
                            "mem_limit": resource.getrlimit(resource.RLIMIT_AS)[0],
                            "cpu_limit": resource.getrlimit(resource.RLIMIT_CPU)[0],
                        }}, f)
                """
            )
        )
