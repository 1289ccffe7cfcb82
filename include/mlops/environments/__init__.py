"""Per-project Python environments: `environment.requirements` planned against the shared layer.

A project's requirements either fit the shared layer (the repo's uv.lock: nothing to install, or an
error naming what to add to it) or conflict with it (the project runs in its own uv environment,
resolved by `mlops validate` and recorded in a lock next to its YAML). Resolution runs uv and may
reach the package index: never at DAG parse time.

Import from the modules (this package imports nothing, so code that runs inside an isolated
environment, or the schema at DAG parse time, loads only what it uses):
`requirements` (syntax checks), `shared` (the shared layer, the isolated runtime, running uv),
`resolve` (`plan_environment`), `lock` (the lock file, `env_hash`, `lock_environment`).
"""
