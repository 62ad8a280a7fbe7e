"""Studies of issue 7: many runs from one spec file, one results file, table and plot each.

* ``sweep`` (paper 000): equal-size training sets from balanced (r=1) to r=100, a run per method
  and ratio; balanced-probe top-1 and few/many balancedness against r.
* ``equal_size`` (paper 002): balanced vs long-tailed pre-training of the same size, per method;
  in-domain and out-of-domain linear-probe top-1 and their balanced - imbalanced gap.

Run one with ``longtail study recipes/studies/sweep.yaml`` or :func:`run_study`.
"""

from longtail.studies.runner import run_study
from longtail.studies.spec import StudySpec, load_spec

__all__ = ["StudySpec", "load_spec", "run_study"]
