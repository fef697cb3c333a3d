"""setuptools needs this file for cffi_modules; all metadata lives in pyproject.toml."""

from setuptools import setup

setup(cffi_modules=["build.py:ffibuilder"])
