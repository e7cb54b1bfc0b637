"""Everything ganforge says to MLflow, one room per job:

- client.py      the tracking URI, one client per URI, retries of transient failures and their one-line errors,
                 redaction of secrets, the names and values MLflow accepts (every other room calls MLflow through it)
- job_run.py     the job's run (driver side): spec, job YAML, final ranking
- trial_run.py   each trial's child run, written from the trial's process and buffered through outages
- versions.py    registered models as the registry rooms find them: references, lookups, tags, artifacts
- register.py    a search's champion as a new model version (lineage, promotion by metric, `promote` by hand)
- pull.py        a version back as a folder or an `nn.Module`, with nothing unpickled (`load_generator`)
- browse.py      list, describe and compare versions
- pyfunc_model.py the MLflow models-from-code entry every registered version carries
"""
