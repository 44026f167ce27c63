"""``modseg bench node`` options that need no DDS."""
import os

import pytest

from modseg_ros.bench.node import _cpus
from modseg_ros.errors import ConfigError


def test_stream_cpus_are_some_but_not_all_of_the_available_ones():
    available = sorted(os.sched_getaffinity(0))
    assert _cpus("") == set()
    if len(available) > 1:
        assert _cpus(str(available[-1])) == {available[-1]}
    for spec in ("one", ",".join(map(str, available)), str(max(available) + 1000)):
        with pytest.raises(ConfigError, match="--stream-cpus"):
            _cpus(spec)
