"""`ganforge report`: one self-contained HTML page about a search (finished or running), built from what the run
stores: its record, Tune's results, PBT's exploit log and the per-evaluation sample grids.

collect.py reads a run into a `ReportData`; each section module turns it into HTML (plots are SVG drawn by svg.py);
page.py assembles the page; publish.py writes it (storage, MLflow) and refreshes it while a search runs.
"""
