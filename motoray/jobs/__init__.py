"""A job's life, in one place.

    record.py    a job as data: what it runs (JobInputs, frozen when accepted) and what it
                 did (JobRecord, i.e. job.json)
    status.py    what is known of it while it lives (JobInfo) and the one function that moves
                 it from state to state (`advance`), refusing a move that is not allowed
    folder.py    its folder: the accepted inputs, its log lines, a stop asked for, job.json;
                 and the output root's list of accepted jobs not ended yet
    deadline.py  when it must end (limits.job_timeout_s from its acceptance)
    board.py     every job's JobInfo, one actor call away from any API replica
    runner.py    the warm runner: one long-lived actor runs the service's jobs, resumes those
                 a dead runner or a stopped service left unended
    service.py   what the API and `motoray run` call: submit, status, logs, stop

    PENDING --> RUNNING --> SUCCEEDED | FAILED | STOPPED
    PENDING --> FAILED | STOPPED

Accepted means durable: the inputs are in the job's folder before the service answers 202,
and whatever runner comes next (Ray restarted it, or the service started again on the same
config and output root) resumes every accepted job that has not ended.
"""
