"""Developer tools: the synthetic document renderer, fixture builder and benchmarks.

Nothing in the installed product imports this package; it runs from a checkout.
"""
