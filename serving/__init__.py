"""Tollgate's model server: one ``kserve.Model`` behind ``kserve.ModelServer``.

Entry point in the serving image: ``python -m tollgate.serving --model-dir /mnt/models``.

Importing this package does nothing else. kserve, however, parses ``sys.argv`` when it is
first imported (``kserve.model_server`` calls ``parser.parse_known_args()`` at module level)
and exits when an option it knows carries a value it does not accept: ``tollgate predict
--protocol rest-v1`` would die inside ``import kserve`` on kserve's own ``--protocol``
(choices v1, v2, grpc-v2). Tollgate passes every server setting explicitly and never needs
kserve's reading of the command line, so the processes Tollgate starts keep kserve away
from their flags: ``python -m tollgate.serving`` calls :func:`import_kserve_with_bare_argv`
before anything imports kserve, and the ``tollgate`` script hands its arguments to Typer and
leaves ``sys.argv`` bare. A program of your own that imports Tollgate's serving
modules while its command line carries kserve-like flags should do the same.
"""

import sys


def import_kserve_with_bare_argv() -> None:
    """Import kserve with ``sys.argv`` cut to the program name, then put ``sys.argv`` back.

    Call it at the start of a process, before anything imports kserve; once kserve is
    imported it does nothing (kserve reads the command line only on its first import)."""
    if "kserve" in sys.modules:
        return
    argv = sys.argv
    sys.argv = argv[:1]
    try:
        import kserve  # noqa: F401
    finally:
        sys.argv = argv
