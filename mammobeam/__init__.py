"""mammobeam: screening mammograms scored at population scale on Apache Beam.

The code lives in the design card's folders, installed as subpackages:
``mammobeam.schemas`` (records, tables, codes), ``mammobeam.transforms`` (DICOM reading, pixels,
exams), ``mammobeam.serving`` (model contract and handlers), ``mammobeam.pipelines`` (wiring and
the command line), ``mammobeam.synthetic`` and ``mammobeam.analytics``.
"""

__version__ = "0.1.0"
