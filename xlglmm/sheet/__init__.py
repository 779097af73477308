"""The worksheet layer: cell values -> validated model -> engine -> one labelled block.

``udfs`` declares every worksheet function once (``udfs.FUNCTIONS``, the only list of
their names), ``calling`` is how a host hands a function cell values and takes its
result back, ``values`` validates what it was handed, ``block`` lays a fitted model out
as cells, ``cache`` answers an unchanged recalculation at once.  The Excel add-in, the
LibreOffice bridge and ``xlglmm recalc`` all call these same functions.
"""
