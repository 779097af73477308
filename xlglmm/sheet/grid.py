"""Excel's grid, defined once: the limits every layer that lays out or reads cells
obeys (a spilled block, a recalculated workbook, an .xlsx read with guards)."""

MAX_ROW = 1_048_576         # rows of a sheet (XFD1048576 is the last cell)
MAX_COL = 16_384            # columns (XFD)
MAX_CELL_TEXT = 32_767      # characters a cell can hold
