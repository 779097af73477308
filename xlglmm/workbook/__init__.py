"""Workbooks without Excel: reading an .xlsx safely, evaluating the formulas that call
xlglmm's functions, writing the results back into the cells we own, and the templates.
"""
