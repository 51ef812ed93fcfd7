"""Shim so that legacy tools (``python setup.py ...``) still work; metadata lives in setup.cfg."""

from setuptools import setup

setup()
