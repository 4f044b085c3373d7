"""The C extension of the collector's fast path; all other packaging metadata is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        # optional: a machine without a C compiler still installs; the collector then parses every
        # frame in Python (tests/collector/test_fastframes.py fails, so CI notices a broken build).
        Extension(
            "marketdata.collector._fastframes",
            ["services/marketdata/collector/_fastframes.c"],
            optional=True,
            extra_compile_args=["-O2"],
        )
    ]
)
