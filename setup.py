"""pip route for the Python half of modseg_ros (the messages are built by CMake; see the Makefile).

The distribution is named ``modseg-ros-py`` on purpose: a distribution called ``modseg_ros`` would be
the same project to pip as the egg-info that the CMake install writes, and ``pip install -e .`` would
then delete the generated messages.
"""
from setuptools import setup

setup()
