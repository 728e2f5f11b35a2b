"""ksmtrace benchmarks: every module here that defines ``run() -> list[str]`` is one benchmark.

Run them all with ``python -m benchmarks``, or some with ``python -m benchmarks NAME ...``
(module names without the package prefix). Each ``run()`` measures on this machine and
returns the lines to print (figures with their units); it never asserts a target, it
reports whether one was met.
"""
