"""The worksheet layer: cell values -> validated model -> engine -> one labelled block.

``udfs`` declares every worksheet function once (``udfs.FUNCTIONS``, the only list of
their names), ``values`` validates what a host hands a function, ``block`` lays a fitted
model out as cells, ``cache`` answers an unchanged recalculation at once.  The Excel
add-in, the LibreOffice bridge and ``xlglmm recalc`` all call these same functions.
"""
