"""The HTML run report: hours in and kept, agreement plots, loss curves, mini-eval, the synthesized audio.

``accord report RUN_DIR --out report.html`` (see :mod:`accord.report.inputs` for the layout it reads).
"""

from accord.report.inputs import ReportInputs, discover
from accord.report.render import ReportConfig, build_report

__all__ = ["ReportConfig", "ReportInputs", "build_report", "discover"]
