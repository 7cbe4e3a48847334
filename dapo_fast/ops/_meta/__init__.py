"""Fake (meta) impls and autograd of the dispatcher ops, one module per op module.

``_meta/<op>.py`` holds the fake impls, ``setup_context`` and the backward built from a given
backward op, and a ``register`` function that attaches them to one implementation of the op:
the front (``ops/<op>.py``) registers the compiled C++/CUDA op with it, the Triton module
(``ops/_triton/<op>.py``) its ``<op>_triton`` op, so both are differentiated and traced the same
way. These modules import nothing from the fronts or the Triton modules.
"""
