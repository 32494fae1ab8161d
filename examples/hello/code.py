"""Hello world: one function, published as /add."""


def livepandas_add(x: float = 1, y: float = 2):
    """Add two numbers."""
    return x + y
