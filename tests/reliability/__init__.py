"""Reliability: the function server and the extension under load, faults and hostile input."""
