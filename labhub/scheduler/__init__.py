"""The hub's routine work on APScheduler: the jobs (:mod:`labhub.scheduler.jobs`), the list of
them (:mod:`labhub.scheduler.catalog`) and the scheduler that runs them once per database
(:mod:`labhub.scheduler.service`). docs/operations.md says what each job does."""
