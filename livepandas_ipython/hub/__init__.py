"""The livepandas hub: canvases, sessions and accounts served by ``livepandas-hub``, with worker processes."""
