"""Tollgate's model server: one ``kserve.Model`` behind ``kserve.ModelServer``.

Entry point in the serving image: ``python -m tollgate.serving --model-dir /mnt/models``.
"""

import sys

# kserve parses sys.argv when it is first imported (kserve.model_server) and exits on
# options it knows with values it does not (`tollgate predict --protocol rest-v1`).
# Import it once with a bare argv; every server setting is passed explicitly instead.
_argv = sys.argv
sys.argv = _argv[:1]
try:
    import kserve  # noqa: F401
finally:
    sys.argv = _argv
del _argv
