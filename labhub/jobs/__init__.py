"""The hub's jobs, a module per kind of routine work; each module's ``specs(settings)`` lists
its jobs (:class:`labhub.scheduler.jobs.JobSpec`) and the catalog gathers them."""
