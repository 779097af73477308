"""The hosts' doors: installing the Excel add-in (xlwings) and the LibreOffice Calc
bridge (a Basic module, a Python script, and a worker process serving the functions).
"""
